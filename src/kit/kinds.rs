//! Kinds of things named in messages: a file's type, a JSON value's type.

use serde_json::Value;

/// What kind of file this is, in words ("FIFO", "socket", "character device", ...).
pub fn file_kind(ft: &std::fs::FileType) -> &'static str {
    if ft.is_file() {
        return "regular file";
    }
    if ft.is_dir() {
        return "folder";
    }
    if ft.is_symlink() {
        return "symbolic link";
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "FIFO";
        }
        if ft.is_socket() {
            return "socket";
        }
        if ft.is_block_device() {
            return "block device";
        }
        if ft.is_char_device() {
            return "character device";
        }
    }
    "special file"
}

/// How a JSON value is named in messages ("a string", "an array", ...).
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
