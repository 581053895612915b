use super::*;

#[test]
fn numbers_read_well() {
    assert_eq!(fmt_num(95.0), "95");
    assert_eq!(fmt_num(12.5), "12.5");
    assert_eq!(fmt_num(84.214), "84.21");
    assert_eq!(fmt_num(0.0), "0");
    assert_eq!(human_size(500), "500 bytes");
    assert_eq!(human_size(2048), "2.0 KB");
    assert_eq!(human_size(6 * 1024 * 1024), "6.0 MB");
}

/// The errors only a failing machine reaches (an emulator that cannot start, a task that
/// panicked) keep their messages and exit codes.
#[test]
fn unreachable_errors_keep_their_messages_and_codes() {
    let cases = [
        (
            CheckError::Emulator("address in use".into()),
            "cannot start the built-in emulator: address in use",
            Exit::Usage,
        ),
        (
            CheckError::Internal("task panicked".into()),
            "internal error: task panicked",
            Exit::Internal,
        ),
    ];
    for (e, msg, code) in cases {
        assert_eq!(e.to_string(), msg);
        assert_eq!(e.exit_code(), code, "{e}");
    }
}

#[test]
fn fatal_refusals_keep_the_kind_s_exit_code() {
    for (kind, code) in [
        (FatalKind::InvalidKey, Exit::Auth),
        (FatalKind::Permission, Exit::Auth),
        (FatalKind::NotFound, Exit::Auth),
        (FatalKind::PaymentRequired, Exit::Credits),
        (FatalKind::OutOfCredits, Exit::Credits),
    ] {
        let e = CheckError::Fatal {
            kind,
            message: "no".into(),
        };
        assert_eq!(e.exit_code(), code, "{kind:?}");
        assert_eq!(
            e.to_string(),
            format!("{}; the API said: no", kind.explain())
        );
    }
}

#[test]
fn terminal_escapes_are_neutralised() {
    let answer = r#"{"liveness": {"warnings": [{"risk": "X\u001b[2J", "log_type": "error",
        "short_description": "a\u001b[31mred\nb"}]}}"#;
    let r = crate::didit::CheckResponse::read(answer).unwrap().unwrap();
    let mut out = Vec::new();
    print_warnings(&r, &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        !out.contains('\x1b') && out.contains("a\\u{1b}[31mred\\nb"),
        "{out}"
    );
}
