use super::*;

#[test]
fn uris_are_told_from_paths() {
    let u = Uri::parse("s3://selfies/2026/q3/").unwrap().unwrap();
    assert_eq!(
        u,
        Uri {
            scheme: Scheme::S3,
            bucket: "selfies".into(),
            key: "2026/q3/".into()
        }
    );
    assert_eq!(Uri::parse("S3://b").unwrap().unwrap().key, "");
    assert_eq!(Uri::parse("gs://b/x").unwrap().unwrap().scheme, Scheme::Gcs);
    assert_eq!(
        Uri::parse("az://c/x").unwrap().unwrap().scheme,
        Scheme::Azure
    );
    assert!(Uri::parse("selfies/a.jpg").is_none());
    assert!(Uri::parse("/tmp/s3://x").is_none());
    assert!(!is_uri(Path::new("./s3:/b")));
    for bad in ["s3://", "s3:///key", "s3://bad bucket/x"] {
        let e = Uri::parse(bad).unwrap().unwrap_err();
        assert!(
            e.to_string().ends_with("write it as s3://BUCKET/PREFIX/"),
            "{e}"
        );
    }
}

#[test]
fn plain_http_only_on_loopback() {
    for ok in [
        "http://127.0.0.1:9000",
        "http://localhost:1/x",
        "http://[::1]:80",
        "http://127.8.9.10",
    ] {
        assert!(matches!(plain_http(ok), Ok(true)), "{ok}");
    }
    for bad in [
        "http://10.0.0.1:9000",
        "http://minio.internal",
        "http://127.0.0.1.evil.example",
        "http://localhost@evil.example",
        "nonsense",
    ] {
        assert!(!matches!(plain_http(bad), Ok(true)), "{bad}");
    }
    let uri = Uri::parse("s3://b/").unwrap().unwrap();
    let opts = StorageOptions {
        endpoint: Some("http://minio.internal:9000".into()),
        region: Some("us-east-1".into()),
    };
    let e = build(&uri, &opts).err().expect("refused");
    assert!(
        e.to_string()
            .contains("http://minio.internal:9000 is plain http off this machine"),
        "{e}"
    );
}

#[test]
fn the_direct_requests_go_where_the_storage_client_goes() {
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey as K};
    let at = |b: AmazonS3Builder| s3_listing(&b, "selfies").unwrap();
    let aws = at(AmazonS3Builder::new().with_region("eu-west-1"));
    assert_eq!(aws.endpoint, "https://s3.eu-west-1.amazonaws.com/selfies");
    assert_eq!(aws.region, "eu-west-1");
    assert!(aws.sign_payload && !aws.skip_signature);
    let hosted = at(AmazonS3Builder::new()
        .with_region("eu-west-1")
        .with_virtual_hosted_style_request(true));
    assert_eq!(
        hosted.endpoint,
        "https://selfies.s3.eu-west-1.amazonaws.com"
    );
    let minio = at(AmazonS3Builder::new().with_endpoint("http://127.0.0.1:9000/"));
    assert_eq!(minio.endpoint, "http://127.0.0.1:9000/selfies");
    assert_eq!(minio.region, "us-east-1");
    let public = at(AmazonS3Builder::new()
        .with_config(K::SkipSignature, "true")
        .with_config(K::UnsignedPayload, "true"));
    assert!(public.skip_signature && !public.sign_payload);
    let express = AmazonS3Builder::new().with_config(K::S3Express, "true");
    assert_eq!(s3_listing(&express, "b--use1-az4--x-s3"), None);
}

#[test]
fn store_errors_are_told_apart() {
    let status = |code: &str, body: &str| {
        format!(
            "Error performing list request: Server returned non-2xx status code: {code}: {body}"
        )
    };
    assert_eq!(
        classify_text(
            &status("404 Not Found", "<Code>NoSuchBucket</Code>"),
            false,
            false
        ),
        Failure::Refused("the bucket does not exist".into())
    );
    assert_eq!(
        classify_text(
            &status("403 Forbidden", "<Code>InvalidAccessKeyId</Code>"),
            false,
            false
        ),
        Failure::Refused("the access key is not known".into())
    );
    assert_eq!(
        classify_text(&status("403 Forbidden", ""), false, false),
        Failure::Refused("the credentials were refused (HTTP 401/403)".into())
    );
    assert_eq!(classify_text("not found", true, false), Failure::Missing);
    assert_eq!(
        classify_text(&status("503 Service Unavailable", "SlowDown"), false, false),
        Failure::Failed
    );
    assert_eq!(
        classify_text("connection refused", false, false),
        Failure::Failed
    );
}

#[test]
fn names_that_are_clearly_not_images_are_never_downloaded() {
    assert!(not_an_image_by_name("a.jpg").is_none());
    assert!(not_an_image_by_name("A.JPEG").is_none());
    assert!(not_an_image_by_name("0f3c2a9e").is_none(), "no extension");
    assert!(not_an_image_by_name(".jpg").is_none());
    assert!(not_an_image_by_name("v1.2.selfie-capture").is_none());
    assert_eq!(
        not_an_image_by_name("notes.txt").unwrap(),
        "not an image by its name (.txt); never downloaded"
    );
    assert!(not_an_image_by_name("clip.mp4").is_some());
}
