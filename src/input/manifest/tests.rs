use super::*;

fn manifest_at(dir: &Path, content: &[u8], opts: &SourceOptions) -> Result<Vec<Item>, InputError> {
    let p = dir.join("manifest.csv");
    std::fs::write(&p, content).unwrap();
    let (m, rows, kept) = Manifest::file(&p, opts, &|_| true)?;
    let items: Vec<Item> = m
        .map(|e| match e {
            Event::Item(i) => i,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        (rows, kept),
        (items.len() as u64, rows),
        "the pass counts every row"
    );
    Ok(items)
}

#[test]
fn the_one_pass_counts_the_rows_a_key_filter_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.csv");
    std::fs::write(&p, "id,path\na,1.jpg\n\n,,\nb,2.jpg\n,3.jpg\na,4.jpg\n").unwrap();
    let keep = |k: &str| k != "b";
    let (m, rows, kept) = Manifest::file(&p, &SourceOptions::default(), &keep).unwrap();
    assert_eq!(
        (rows, kept),
        (4, 3),
        "blank rows are no rows; b is not kept"
    );
    let keys: Vec<String> = m
        .filter_map(|e| match e {
            Event::Item(i) => Some(i.key),
            _ => None,
        })
        .collect();
    assert_eq!(
        keys,
        ["a", "b", "3.jpg", "a#row5"],
        "the duplicate found by the pass"
    );
}

#[test]
fn renamed_duplicates_never_take_another_rows_key() {
    for manifest in [
        "id,path\nx,a.jpg\nx,b.jpg\nx#row2,c.jpg\n",
        "id,path,other\nx,a.jpg,\n,,y\n#row2,c.jpg,\n",
        "id,path\nx#row2,c.jpg\nx,a.jpg\nx,b.jpg\n",
    ] {
        let keys: Vec<String> = items(manifest.as_bytes())
            .into_iter()
            .map(|i| i.key)
            .collect();
        let distinct: std::collections::BTreeSet<&String> = keys.iter().collect();
        assert_eq!(distinct.len(), 3, "{manifest:?} gave {keys:?}");
    }
}

#[test]
fn a_file_found_by_its_pass_and_a_stream_by_its_map_name_duplicates_alike() {
    let manifests = [
        "id,path\nx,a.jpg\nx,b.jpg\nx#row2,c.jpg\nx,d.jpg\nx#row2,e.jpg\n",
        "id,path\nx#row3,c.jpg\nx,a.jpg\nx,b.jpg\nx#row3.2,f.jpg\n",
        "id,path,other\nx,a.jpg,\n,,y\n#row2,c.jpg,\n,,z\n,a.jpg,\n,a.jpg,\n",
        "path\na.jpg\n\nb.jpg\na.jpg\n,\n a.jpg \nb.jpg#row4\nb.jpg\n",
    ];
    for manifest in manifests {
        let from_file = items(manifest.as_bytes());
        let input: Input = Box::new(io::Cursor::new(manifest.as_bytes().to_vec()));
        let name = "m".to_string();
        let streamed = Manifest::new(input, name.clone(), name, None, &SourceOptions::default())
            .unwrap()
            .filter_map(|e| match e {
                Event::Item(i) => Some(i),
                _ => None,
            });
        let a: Vec<_> = from_file.iter().map(|i| (&i.key, &i.problem)).collect();
        let b: Vec<_> = streamed.map(|i| (i.key, i.problem)).collect();
        let b: Vec<_> = b.iter().map(|(k, p)| (k, p)).collect();
        assert_eq!(a, b, "{manifest:?}");
        let distinct: std::collections::BTreeSet<_> = a.iter().map(|e| e.0).collect();
        assert_eq!(distinct.len(), a.len(), "{manifest:?}");
    }
}

fn items(content: &[u8]) -> Vec<Item> {
    let dir = tempfile::tempdir().unwrap();
    manifest_at(dir.path(), content, &SourceOptions::default()).unwrap()
}

fn error(content: &[u8], opts: &SourceOptions) -> String {
    let dir = tempfile::tempdir().unwrap();
    match manifest_at(dir.path(), content, opts) {
        Ok(items) => panic!("expected an error, got {items:?}"),
        Err(e) => e
            .to_string()
            .replace(&dir.path().join("manifest.csv").display().to_string(), "M"),
    }
}

#[test]
fn conventional_columns_and_carried_columns() {
    let dir = tempfile::tempdir().unwrap();
    let got = manifest_at(
        dir.path(),
        b"id,path,vendor_data,metadata,branch\nu1,a/1.jpg,user-1,\"{\"\"k\"\": 1}\",north\n",
        &SourceOptions::default(),
    )
    .unwrap();
    assert_eq!(got.len(), 1);
    let i = &got[0];
    assert_eq!(i.key, "u1");
    assert_eq!(i.path, dir.path().join("a/1.jpg"));
    assert_eq!(i.display_path, "a/1.jpg");
    assert_eq!(
        i.source,
        dir.path().join("manifest.csv").display().to_string()
    );
    assert_eq!(i.row, Some(1));
    assert_eq!(i.vendor_data.as_deref(), Some("user-1"));
    assert_eq!(
        serde_json::Value::Object(i.metadata.clone().unwrap()),
        serde_json::json!({"k": 1})
    );
    assert_eq!(
        i.columns,
        BTreeMap::from([("branch".to_string(), "north".to_string())])
    );
    assert_eq!(i.problem, None);
}

#[test]
fn absolute_paths_stay_and_key_is_the_path_without_id() {
    let got = items(b"path\n/data/x.jpg\nb.png\n");
    assert_eq!(got[0].path, PathBuf::from("/data/x.jpg"));
    assert_eq!(got[0].key, "/data/x.jpg");
    assert_eq!(got[1].key, "b.png");
}

#[test]
fn bom_crlf_quotes_and_blank_lines() {
    let content = "\u{feff}id,path,vendor_data,note\r\n\
        \r\n\
        u1,\"dir, with comma/a.jpg\",\"say \"\"hi\"\"\",\"line one\r\nline two\"\r\n\
        \r\n\
        ,,,\r\n\
        u2,b.jpg,=HYPERLINK(\"http://x\"),plain\r\n\
        \r\n";
    let got = items(content.as_bytes());
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].key, "u1");
    assert_eq!(got[0].display_path, "dir, with comma/a.jpg");
    assert_eq!(got[0].vendor_data.as_deref(), Some("say \"hi\""));
    assert_eq!(got[0].columns["note"], "line one\r\nline two");
    assert_eq!(got[0].row, Some(1));
    assert_eq!(got[1].key, "u2");
    assert_eq!(
        got[1].vendor_data.as_deref(),
        Some("=HYPERLINK(\"http://x\")"),
        "passed through unchanged"
    );
    assert_eq!(
        got[1].row,
        Some(3),
        "the all-empty row counts as a row but is skipped"
    );
    assert!(got.iter().all(|i| i.problem.is_none()));
}

#[test]
fn duplicate_ids_and_paths() {
    let got = items(b"id,path\nu1,a.jpg\nu2,b.jpg\nu1,c.jpg\nu1,d.jpg\n");
    let keys: Vec<&str> = got.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["u1", "u2", "u1#row3", "u1#row4"]);
    assert_eq!(
        got[2].problem.as_deref(),
        Some("duplicate id u1 (first on row 1)")
    );
    assert_eq!(
        got[3].problem.as_deref(),
        Some("duplicate id u1 (first on row 1)")
    );

    let got = items(b"path,user\na.jpg,1\na.jpg,2\n");
    assert_eq!(got[1].key, "a.jpg#row2");
    assert_eq!(
        got[1].problem.as_deref(),
        Some("duplicate path a.jpg (first on row 1)")
    );
}

#[test]
fn bad_rows_become_problems_not_aborts() {
    let got = items(
        b"id,path,metadata\n\
          r1,,\n\
          r2,a.jpg,[1]\n\
          r3,b.jpg,{oops\n\
          r4,c.jpg\n\
          r5,d.jpg,{},extra\n\
          ,,{}\n\
          r7,e.jpg,\"{\"\"ok\"\": true}\"\n",
    );
    let probs: Vec<(&str, Option<&str>)> = got
        .iter()
        .map(|i| (i.key.as_str(), i.problem.as_deref()))
        .collect();
    assert_eq!(
        probs,
        [
            ("r1", Some("row 1: the path cell is empty")),
            (
                "r2",
                Some("row 2: metadata is not a JSON object (it is an array)")
            ),
            (
                "r3",
                Some("row 3: metadata is not valid JSON: key must be a string at line 1 column 2")
            ),
            ("r4", Some("row 4 has 2 fields, the header has 3")),
            ("r5", Some("row 5 has 4 fields, the header has 3")),
            ("#row6", Some("row 6: the path cell is empty")),
            ("r7", None),
        ]
    );
}

#[test]
fn non_utf8_row_is_a_problem_and_header_an_error() {
    let got = items(b"id,path\nu1,caf\xE9.jpg\nu2,ok.jpg\n");
    assert_eq!(
        got[0].problem.as_deref(),
        Some("row 1 is not valid UTF-8 text; save the manifest as UTF-8")
    );
    assert_eq!(
        got[0].display_path, "caf\\xe9.jpg",
        "lossless, not a replacement mark"
    );
    assert_eq!(got[1].problem, None);
    // Two rows that differ only in their bad bytes stay two keys, not one "duplicate".
    let got = items(b"path\nM\xfcller.jpg\nM\xe4ller.jpg\n");
    let keys: Vec<&str> = got.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["M\\xfcller.jpg", "M\\xe4ller.jpg"]);
    assert!(
        got.iter()
            .all(|i| !i.problem.as_ref().unwrap().contains("duplicate"))
    );

    let opts = SourceOptions::default();
    assert_eq!(
        error(b"id,p\xE4th\nu1,a.jpg\n", &opts),
        "M: the header row is not UTF-8 text; save the manifest as UTF-8 CSV"
    );
    assert_eq!(
        error(b"\xFF\xFEp\0a\0t\0h\0", &opts),
        "M: the file is UTF-16 text; save the manifest as UTF-8 CSV"
    );
}

#[test]
fn header_errors_name_the_columns() {
    let opts = SourceOptions::default();
    assert_eq!(
        error(b"file,user\na.jpg,u\n", &opts),
        "M has no \"path\" column (choose one with --path-column); its columns are: file, user"
    );
    let o = SourceOptions {
        path_column: "image".into(),
        ..Default::default()
    };
    assert_eq!(
        error(b"file,user\n", &o),
        "M has no \"image\" column (given with --path-column); its columns are: file, user"
    );
    let o = SourceOptions {
        id_column: Some("uid".into()),
        ..Default::default()
    };
    assert_eq!(
        error(b"path,user\n", &o),
        "M has no \"uid\" column (given with --id-column); its columns are: path, user"
    );
    let o = SourceOptions {
        vendor_data_column: Some("who".into()),
        ..Default::default()
    };
    assert!(error(b"path\n", &o).contains("(given with --vendor-data-column)"));
    let o = SourceOptions {
        metadata_column: Some("meta".into()),
        ..Default::default()
    };
    assert!(error(b"path\n", &o).contains("(given with --metadata-column)"));
    assert_eq!(
        error(b"path,id,path\n", &opts),
        "M: column \"path\" appears more than once in the header"
    );
    assert_eq!(
        error(b"", &opts),
        "M is empty: a manifest needs a header row naming its columns"
    );
    assert_eq!(
        error(b"\xEF\xBB\xBF\r\n\r\n", &opts),
        "M is empty: a manifest needs a header row naming its columns"
    );
}

#[test]
fn chosen_columns_and_loose_header_names() {
    let opts = SourceOptions {
        path_column: "file".into(),
        id_column: Some("customer".into()),
        vendor_data_column: Some("user".into()),
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let got = manifest_at(
        dir.path(),
        b" Customer , FILE ,user,,id\nc1,x.jpg,u1,v,i1\n",
        &opts,
    )
    .unwrap();
    assert_eq!(got[0].key, "c1");
    assert_eq!(got[0].display_path, "x.jpg");
    assert_eq!(got[0].vendor_data.as_deref(), Some("u1"));
    assert_eq!(
        got[0].columns,
        BTreeMap::from([
            ("column_4".to_string(), "v".to_string()),
            ("id".to_string(), "i1".to_string())
        ])
    );
}

/// Follow `bytes` through a guard, in chunks of `chunk` bytes: the bytes passed on before
/// the fault (if any) and the fault.
fn guard(bytes: &[u8], chunk: usize) -> (usize, Option<Structure>) {
    struct Chunks<'a>(&'a [u8], usize);
    impl Read for Chunks<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let mut g = Guard::new(Chunks(bytes, chunk));
    let mut passed = 0;
    let mut buf = [0u8; 4096];
    loop {
        match g.read(&mut buf) {
            Ok(0) => return (passed, None),
            Ok(n) => passed += n,
            Err(e) => return (passed, Guard::<Input>::problem(&e).cloned()),
        }
    }
}

#[test]
fn guard_follows_quotes_the_way_the_parser_does() {
    for chunk in [1, 3, 4096] {
        // Quotes inside an unquoted field are plain characters; "" inside a quoted field is
        // a quote; two line breaks in a quoted field are fine; CR, LF and CRLF end rows.
        let ok = b"id,path\r\na\"b,\"x \"\"y\"\" \nz\n\",c\rd,\"1\"2\n\n\n,,\n";
        assert_eq!(guard(ok, chunk), (ok.len(), None), "chunk {chunk}");
    }
    // The fault is found where the quote began, and the bytes before it are passed on.
    let mut text = b"path,note\na.jpg,fine\nb.jpg,\"never closed\n".to_vec();
    for i in 0..20 {
        text.extend_from_slice(format!("c{i}.jpg,x\n").as_bytes());
    }
    let (passed, fault) = guard(&text, 7);
    assert_eq!(fault, Some(Structure::RunawayQuote { row: 2, line: 3 }));
    assert!(passed > 30 && passed < text.len(), "{passed}");
    assert_eq!(
        guard(b"path\na.jpg\n\"b.jpg\n", 4096),
        (18, Some(Structure::UnclosedQuote { row: 2, line: 3 }))
    );
    // Exactly ten line breaks inside one field is still a field.
    let ten = format!("path,note\na.jpg,\"{}\"\n", "l\n".repeat(10));
    assert_eq!(guard(ten.as_bytes(), 4096).1, None);
    let eleven = format!("path,note\na.jpg,\"{}\"\n", "l\n".repeat(11));
    assert_eq!(
        guard(eleven.as_bytes(), 4096).1,
        Some(Structure::RunawayQuote { row: 1, line: 2 })
    );
}

#[test]
fn guard_bounds_one_row() {
    let mut text = b"path\n\n".to_vec();
    text.resize(text.len() + MAX_ROW_BYTES as usize, b'a');
    text.push(b'\n');
    assert_eq!(
        guard(&text, 65536).1,
        None,
        "exactly the limit, terminator aside"
    );
    text.pop();
    text.extend_from_slice(b"a\n");
    assert_eq!(
        guard(&text, 65536),
        (
            6 + MAX_ROW_BYTES as usize,
            Some(Structure::RowTooLong { row: 1, line: 3 })
        )
    );
    let header = vec![b'h'; MAX_ROW_BYTES as usize + 1];
    assert_eq!(
        Structure::RowTooLong { row: 0, line: 1 }.to_string(),
        "the header row (line 1) is longer than 1 MB, the limit for one manifest row"
    );
    assert_eq!(
        guard(&header, 4096).1,
        Some(Structure::RowTooLong { row: 0, line: 1 })
    );
}

#[test]
fn an_unclosed_quote_refuses_the_manifest_naming_its_line() {
    let mut text = "id,path,note\n1,a.jpg,ok\n2,b.jpg,\"two\nlines\"\n3,c.jpg,\"oops\n".to_string();
    for i in 4..40 {
        text.push_str(&format!("{i},{i}.jpg,\n"));
    }
    assert_eq!(
        error(text.as_bytes(), &SourceOptions::default()),
        "M: the quoted field that begins on line 5 (row 3) runs over more than 10 lines: \
         is its closing quote (\") missing?"
    );
    assert_eq!(
        error(
            b"id,path\n1,a.jpg\n2,\"b.jpg\n3,c.jpg\n",
            &SourceOptions::default()
        ),
        "M: the quoted field that begins on line 3 (row 2) is never closed: \
         is its closing quote (\") missing?"
    );
}

#[test]
fn a_huge_line_refuses_the_manifest_with_a_short_message() {
    let mut text = b"path\na.jpg\n".to_vec();
    text.resize(text.len() + 10_000_000, 0);
    text.extend_from_slice(b"\nb.jpg\n");
    let msg = error(&text, &SourceOptions::default());
    assert_eq!(
        msg,
        "M: row 2 (line 3) is longer than 1 MB, the limit for one manifest row"
    );
}

#[test]
fn a_huge_line_on_a_stream_stops_reading_with_memory_bounded() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    // Standard input cannot be checked up front: a header, a good row, then one line of
    // NULs without end. Reading stops once the row passes the limit, having pulled little
    // more than the limit from the stream.
    struct Endless(Arc<AtomicU64>);
    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let at = self.0.fetch_add(buf.len() as u64, Ordering::Relaxed);
            let head = b"path\na.jpg\n";
            for (i, b) in buf.iter_mut().enumerate() {
                *b = head.get(at as usize + i).copied().unwrap_or(0);
            }
            Ok(buf.len())
        }
    }
    let pulled = Arc::new(AtomicU64::new(0));
    let m = Manifest::new(
        Box::new(Endless(pulled.clone())),
        "-".into(),
        "standard input".into(),
        None,
        &SourceOptions::default(),
    )
    .unwrap();
    let events: Vec<Event> = m.collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(matches!(&events[0], Event::Item(i) if i.key == "a.jpg"));
    assert_eq!(
        events[1],
        Event::Warning(
            "standard input: reading stopped: row 2 (line 3) is longer than 1 MB, the limit \
             for one manifest row; the rows from there on were not read"
                .into()
        )
    );
    assert!(
        pulled.load(Ordering::Relaxed) < MAX_ROW_BYTES + 256 * 1024,
        "{}",
        pulled.load(Ordering::Relaxed)
    );
}

#[test]
fn odd_path_and_id_cells_are_row_problems_with_short_messages() {
    let long_id = "i".repeat(5000);
    let long_path = "p".repeat(5000);
    let text =
        format!("id,path\nr1,a\0b.jpg\n{long_id},x.jpg\n,{long_path}\n,{long_path}\nr5,ok.jpg\n");
    let got = items(text.as_bytes());
    let probs: Vec<(&str, &str)> = got
        .iter()
        .map(|i| (i.key.as_str(), i.problem.as_deref().unwrap_or("")))
        .collect();
    let cut = |c: &str| {
        format!(
            "{}… (5000 bytes in all)",
            c.repeat(crate::messages::ECHO_MAX)
        )
    };
    assert_eq!(
        probs,
        [
            ("r1", "row 1: the path holds a NUL character: a\\u{0}b.jpg"),
            (
                "#row2",
                &*format!(
                    "row 2: the id is 5000 bytes long, over the 4096-byte limit: {}",
                    cut("i")
                )
            ),
            (
                "#row3",
                &*format!(
                    "row 3: the path is 5000 bytes long, over the 4096-byte limit: {}",
                    cut("p")
                )
            ),
            (
                "#row4",
                &*format!(
                    "row 4: the path is 5000 bytes long, over the 4096-byte limit: {}",
                    cut("p")
                )
            ),
            ("r5", ""),
        ]
    );
}

#[test]
fn long_names_in_header_errors_are_cut() {
    let long = "c".repeat(3000);
    let msg = error(
        format!("{long},{long}\n").as_bytes(),
        &SourceOptions::default(),
    );
    assert_eq!(
        msg,
        format!(
            "M: column \"{}… (3000 bytes in all)\" appears more than once in the header",
            "c".repeat(crate::messages::ECHO_MAX)
        )
    );
    let msg = error(format!("{long},x\n").as_bytes(), &SourceOptions::default());
    assert!(msg.len() < 300, "{msg}");
    assert!(msg.ends_with("… (3003 bytes in all)"), "{msg}");
}

#[test]
fn header_only_manifest_has_no_items() {
    assert!(items(b"id,path\r\n").is_empty());
}

#[test]
fn rows_stream_one_at_a_time() {
    // A reader that fails after the first rows: the items before it still come out, then a warning.
    struct Flaky(io::Cursor<Vec<u8>>);
    impl Read for Flaky {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.0.read(buf)? {
                0 => Err(io::Error::other("disk went away")),
                n => Ok(n),
            }
        }
    }
    let input: Input = Box::new(Flaky(io::Cursor::new(b"path\na.jpg\nb.jpg\n".to_vec())));
    let m = Manifest::new(
        input,
        "m.csv".into(),
        "m.csv".into(),
        None,
        &SourceOptions::default(),
    )
    .unwrap();
    let events: Vec<Event> = m.collect();
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(
        matches!(&events[1], Event::Item(i) if i.key == "b.jpg" && i.path == Path::new("b.jpg"))
    );
    assert!(
        matches!(&events[2], Event::Warning(w) if w.starts_with("m.csv: reading stopped after row 2: "))
    );
}

#[test]
fn an_endless_manifest_still_yields_items() {
    // Rows generated forever: items come out one by one, so nothing is collected up front.
    struct Endless(u64, Vec<u8>);
    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.1.is_empty() {
                self.0 += 1;
                self.1 = if self.0 == 1 {
                    b"path\n".to_vec()
                } else {
                    format!("{}.jpg\n", self.0).into_bytes()
                };
            }
            let n = buf.len().min(self.1.len());
            buf[..n].copy_from_slice(&self.1[..n]);
            self.1.drain(..n);
            Ok(n)
        }
    }
    let input: Input = Box::new(Endless(0, Vec::new()));
    let m = Manifest::new(
        input,
        "-".into(),
        "standard input".into(),
        None,
        &SourceOptions::default(),
    )
    .unwrap();
    let keys: Vec<String> = m
        .take(3)
        .map(|e| match e {
            Event::Item(i) => i.key,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(keys, ["2.jpg", "3.jpg", "4.jpg"]);
}

#[test]
fn the_reference_column_is_resolved_like_the_path_and_not_carried() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SourceOptions {
        references: Some(super::super::References::Column("portrait".into())),
        ..SourceOptions::default()
    };
    let csv = "id,path,Portrait,team\n\
               a,s/a.jpg,ids/a.png,x\n\
               b,s/b.jpg,/abs/b.jpg,x\n\
               c,s/c.jpg,s3://bucket/ids/c.png,x\n\
               d,s/d.jpg,  ,x\n\
               e,s/e.jpg,s3://bucket/,x\n";
    let items = manifest_at(dir.path(), csv.as_bytes(), &opts).unwrap();
    let r = |i: usize| items[i].reference.as_deref();
    assert_eq!(r(0).unwrap().path, dir.path().join("ids/a.png"));
    assert_eq!(r(0).unwrap().display, "ids/a.png");
    assert_eq!(r(1).unwrap().path, Path::new("/abs/b.jpg"));
    assert_eq!(r(2).unwrap().path, Path::new("s3://bucket/ids/c.png"));
    assert!(items[..3].iter().all(|i| i.problem.is_none()));
    // The column is the reference's, found case-insensitively: not carried to the outputs.
    assert_eq!(items[0].columns.keys().collect::<Vec<_>>(), ["team"]);
    assert!(r(3).is_none());
    assert_eq!(
        items[3].problem.as_deref(),
        Some("row 4: no reference image: the Portrait cell is empty")
    );
    assert!(r(4).is_none());
    assert!(
        items[4]
            .problem
            .as_deref()
            .unwrap()
            .contains("names a bucket, not an object"),
        "{:?}",
        items[4].problem
    );
}

#[test]
fn a_manifest_without_the_reference_column_is_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SourceOptions {
        references: Some(super::super::References::Column("ref_path".into())),
        ..SourceOptions::default()
    };
    let e = manifest_at(dir.path(), b"path\na.jpg\n", &opts).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("has no \"ref_path\" column (face match needs each selfie's reference"),
        "{text}"
    );
    assert!(text.ends_with("its columns are: path"), "{text}");
}

#[test]
fn a_reference_column_beside_ref_dir_is_named_as_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.csv");
    std::fs::write(&p, "path,Ref_Path\na.jpg,ids/a.png\n").unwrap();
    let opts = SourceOptions {
        references: Some(super::super::References::Dir("ids".into())),
        ..SourceOptions::default()
    };
    let (m, rows, _) = Manifest::file(&p, &opts, &|_| true).unwrap();
    assert_eq!(rows, 1);
    let events: Vec<Event> = m.collect();
    let Event::Warning(w) = &events[0] else {
        panic!("{events:?}")
    };
    assert!(w.ends_with("its Ref_Path column is not used: --ref-dir ids pairs each selfie with its reference (leave --ref-dir out to take the column's)"), "{w}");
    let Event::Item(item) = &events[1] else {
        panic!("{events:?}")
    };
    assert!(item.reference.is_none());
    assert_eq!(item.columns["Ref_Path"], "ids/a.png", "carried as data");
}
