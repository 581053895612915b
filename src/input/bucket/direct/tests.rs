use super::*;

#[test]
fn keys_are_read_exactly_as_listed() {
    let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
        <ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
        <Name>b</Name><Prefix>q3/</Prefix><KeyCount>5</KeyCount><IsTruncated>true</IsTruncated>\
        <Contents><Key>q3/pct%20x.jpg</Key><Size>10</Size><ETag>&quot;abc&quot;</ETag></Contents>\
        <Contents><Key>q3/a//b.jpg</Key><Size>1</Size></Contents>\
        <Contents><Key>q3/tab\there.jpg</Key><Size>2</Size><ETag>\"d\"</ETag></Contents>\
        <Contents><Key> q3/ü &amp; &#43;&#x20;.jpg </Key><Size>3</Size><ETag></ETag></Contents>\
        <Contents><Key><![CDATA[q3/<odd>.jpg]]></Key><Size>4</Size></Contents>\
        <NextContinuationToken>tok+/=</NextContinuationToken>\
        </ListBucketResult>";
    let page = parse_page(xml).unwrap();
    let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "q3/pct%20x.jpg",
            "q3/a//b.jpg",
            "q3/tab\there.jpg",
            " q3/ü & + .jpg ",
            "q3/<odd>.jpg"
        ]
    );
    assert_eq!(page.objects[0].etag.as_deref(), Some("\"abc\""));
    assert_eq!(page.objects[1].etag, None);
    assert_eq!(page.objects[3].etag, None, "an empty ETag is none");
    assert_eq!(page.objects[2].size, 2);
    assert_eq!(page.next.as_deref(), Some("tok+/="));
}

#[test]
fn the_last_page_has_no_token_and_bad_pages_are_refused() {
    let last = parse_page("<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>")
        .unwrap();
    assert_eq!(last, Page::default());
    for (bad, why) in [
        (
            "<Error><Code>AccessDenied</Code></Error>",
            "expected ListBucketResult",
        ),
        (
            "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
            "no continuation token",
        ),
        (
            "<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>",
            "no Key",
        ),
        (
            "<ListBucketResult><Contents><Key>k</Key><Size>x</Size></Contents></ListBucketResult>",
            "not a number",
        ),
        ("<ListBucketResult><Contents><Key>k", "cut short"),
        ("", "no ListBucketResult"),
    ] {
        let e = parse_page(bad).unwrap_err();
        assert!(e.contains(why), "{bad}: {e}");
    }
}

#[tokio::test(start_paused = true)]
async fn passing_faults_are_retried_a_bounded_number_of_times_and_others_not_at_all() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let tries = AtomicU32::new(0);
    let flaky = |fail_first: u32, passing: bool| {
        let tries = &tries;
        move || async move {
            let n = tries.fetch_add(1, Ordering::SeqCst);
            if n < fail_first {
                Err(failed(format!("attempt {n}"), passing, Some(503)))
            } else {
                Ok(n)
            }
        }
    };
    let started = tokio::time::Instant::now();
    assert_eq!(
        retried(flaky(2, true)).await,
        Ok(2),
        "the third attempt answers"
    );
    tries.store(0, Ordering::SeqCst);
    let e = retried(flaky(100, true)).await.unwrap_err();
    assert_eq!(tries.load(Ordering::SeqCst), 5, "one attempt and 4 retries");
    assert_eq!(e.message, "attempt 4");
    // The waits grow from 100 ms (with jitter), bounded: well under the 60 s a read may take.
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    tries.store(0, Ordering::SeqCst);
    let e = retried(flaky(100, false)).await.unwrap_err();
    assert_eq!(
        tries.load(Ordering::SeqCst),
        1,
        "not a passing fault: no retry"
    );
    assert_eq!(e.status, Some(503));
}

#[test]
fn azure_names_are_read_exactly_as_listed() {
    let xml = "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?>\
        <EnumerationResults ServiceEndpoint=\"http://127.0.0.1:1/devstoreaccount1\" \
        ContainerName=\"c\"><Prefix>q3/</Prefix><Blobs>\
        <Blob><Name>q3/pct%20x.jpg</Name><Properties><Content-Length>10</Content-Length>\
        <Etag>0x8DC1</Etag></Properties></Blob>\
        <Blob><Name Encoded=\"true\">q3/tab%09here.jpg</Name><Properties>\
        <Etag>\"0x8DC2\"</Etag><Content-Length>2</Content-Length></Properties></Blob>\
        <Blob><Name> q3/ü &amp; +.jpg </Name><Properties><Content-Length>3</Content-Length>\
        </Properties><Metadata><Name>not the name</Name></Metadata></Blob>\
        </Blobs><NextMarker>2!72!MDAw</NextMarker></EnumerationResults>";
    let page = parse_blob_page(xml.trim_start_matches('\u{feff}')).unwrap();
    assert_eq!(
        page,
        parse_blob_page(&xml[3..]).unwrap(),
        "the same without the mark"
    );
    let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(
        keys,
        ["q3/pct%20x.jpg", "q3/tab\there.jpg", " q3/ü & +.jpg "]
    );
    assert_eq!(page.objects[0].etag.as_deref(), Some("0x8DC1"));
    assert_eq!(page.objects[1].size, 2);
    assert_eq!(page.objects[2].etag, None);
    assert_eq!(page.next.as_deref(), Some("2!72!MDAw"));
    let last =
        parse_blob_page("<EnumerationResults><Blobs/><NextMarker/></EnumerationResults>").unwrap();
    assert_eq!(last, Page::default());
    for (bad, why) in [
        (
            "<Error><Code>AuthenticationFailed</Code></Error>",
            "expected EnumerationResults",
        ),
        (
            "<EnumerationResults><Blobs><Blob><Properties><Content-Length>1</Content-Length>\
             </Properties></Blob></Blobs></EnumerationResults>",
            "no Name",
        ),
        (
            "<EnumerationResults><Blobs><Blob><Name Encoded=\"true\">%ZZ</Name>\
             </Blob></Blobs></EnumerationResults>",
            "not well encoded",
        ),
        ("<EnumerationResults><Blobs>", "cut short"),
    ] {
        let e = parse_blob_page(bad).unwrap_err();
        assert!(e.contains(why), "{bad}: {e}");
    }
}

#[test]
fn query_values_are_sent_as_themselves() {
    assert_eq!(encode("q3/ñ a+b%20.jpg"), "q3%2F%C3%B1%20a%2Bb%2520.jpg");
    assert_eq!(encode("A-z_0.9~"), "A-z_0.9~");
}
