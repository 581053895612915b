//! Face match's pairing by folder (`--ref-dir DIR`): each selfie's reference is found under
//! DIR by the selfie's key (its path relative to its folder or prefix, or its manifest id).
//!
//! The rule, in order:
//! 1. `DIR/KEY`, when it is a file: the same relative path (`2026/q3/u1.jpg` pairs with
//!    `DIR/2026/q3/u1.jpg`).
//! 2. Else the one file in the key's folder under DIR whose name is the key's stem (the key's
//!    file name without its last extension; the whole name when it has none) followed by an
//!    image extension, in any case: `u1.png` pairs with `DIR/u1.jpg` or `DIR/u1.JPEG`, and a
//!    manifest id `user-42` with `DIR/user-42.jpg`.
//! 3. Two or more such files (`u1.jpg` and `u1.png`) are ambiguous, and none is missing: the
//!    item is then an invalid input naming what was looked for, and nothing is sent.
//!
//! A key that would leave DIR (an id with `..`, an absolute path) names no reference.

use std::collections::VecDeque;
use std::path::{Component, Path, PathBuf};

use super::{IMAGE_EXTENSIONS, InputError, Item, Reference};

/// Folders listed for rule 2 and kept, most recent last.
const LISTINGS_KEPT: usize = 8;

/// `--ref-dir`: finds each item's reference.
pub struct RefDir {
    dir: PathBuf,
    /// The folder as given, for the references' names in outputs.
    shown: String,
    /// A few folders' image files by stem, for rule 2 (walks go folder by folder).
    listings: VecDeque<(PathBuf, Vec<(String, String)>)>,
}

impl RefDir {
    /// The folder, checked: it must exist and be a folder.
    pub fn open(dir: &Path) -> Result<Self, InputError> {
        let given = dir.display().to_string();
        let refuse = |why: String| InputError::RefDir {
            dir: crate::messages::cut(&given),
            why,
        };
        if dir.to_str().and_then(super::bucket::Uri::parse).is_some() {
            return Err(refuse(
                "a bucket prefix cannot be the reference folder; name each reference in a \
                 manifest's ref_path column, where object URIs are taken"
                    .into(),
            ));
        }
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(refuse("not a folder".into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(refuse("no such folder".into()));
            }
            Err(e) => return Err(refuse(e.to_string())),
        }
        // Spelled the same whatever way it was typed (`./refs/` is `refs`): the references'
        // names are part of what a resume compares.
        let tidy: PathBuf = dir.components().collect();
        let shown = if tidy.as_os_str().is_empty() {
            ".".to_string()
        } else {
            tidy.display().to_string()
        };
        Ok(RefDir {
            dir: dir.to_path_buf(),
            shown,
            listings: VecDeque::new(),
        })
    }

    /// Refuse a source folder that holds the reference folder (or is it): its references
    /// would be screened as selfies, each compared with itself.
    pub fn outside(&self, source: &Path, shown: &str) -> Result<(), InputError> {
        let (Ok(refs), Ok(source)) = (self.dir.canonicalize(), source.canonicalize()) else {
            return Ok(());
        };
        if refs.starts_with(&source) {
            return Err(InputError::RefDir {
                dir: crate::messages::cut(&self.shown),
                why: format!(
                    "it is inside the source {} (or is it): its reference images would be \
                     screened as selfies, each compared with itself; keep the references in a \
                     folder of their own",
                    crate::messages::cut(shown)
                ),
            });
        }
        Ok(())
    }

    /// Give `item` its reference found by `key` (the item's key as its source gave it, before
    /// any renaming in the run), or a problem saying why it has none.
    pub fn pair(&mut self, item: &mut Item, key: &str) {
        if item.problem.is_some() {
            return;
        }
        match self.find(key) {
            Ok(reference) => item.reference = Some(Box::new(reference)),
            Err(why) => item.problem = Some(why),
        }
    }

    fn find(&mut self, key: &str) -> Result<Reference, String> {
        let rel = Path::new(key);
        let inside = !key.is_empty()
            && rel
                .components()
                .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !inside {
            return Err(format!(
                "no reference image: the key {:?} cannot name a file under --ref-dir {}",
                crate::messages::cut(key),
                self.shown
            ));
        }
        let exact = self.dir.join(rel);
        if exact.is_file() {
            return Ok(self.reference(key, exact));
        }
        let folder_key = rel.parent().unwrap_or(Path::new(""));
        let name = rel.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_default();
        let stem = match name.rsplit_once('.') {
            Some((stem, _)) if !stem.is_empty() => stem.to_string(),
            _ => name.clone(),
        };
        let folder = self.dir.join(folder_key);
        let found: Vec<String> = self
            .listing(&folder)
            .iter()
            .filter(|(s, _)| *s == stem)
            .map(|(_, n)| n.clone())
            .collect();
        let under = |n: &str| {
            let parent = folder_key.to_string_lossy();
            if parent.is_empty() {
                n.to_string()
            } else {
                format!("{parent}/{n}")
            }
        };
        match found.as_slice() {
            [one] => Ok(self.reference(&under(one), folder.join(one))),
            [] => Err(format!(
                "no reference image: neither {} nor {stem}.<image extension> is in {}",
                crate::messages::cut(&self.name(key)),
                self.name(&under("")).trim_end_matches('/')
            )),
            several => Err(format!(
                "ambiguous reference image: {} all match {:?} in {}; keep one, or pair with a \
                 manifest's ref_path column",
                several.join(", "),
                crate::messages::cut(&stem),
                self.name(&under("")).trim_end_matches('/')
            )),
        }
    }

    /// A reference under DIR at `rel`.
    fn reference(&self, rel: &str, path: PathBuf) -> Reference {
        Reference {
            display: self.name(rel),
            path,
            version: None,
        }
    }

    /// `rel` under the folder as given.
    fn name(&self, rel: &str) -> String {
        format!("{}/{rel}", self.shown.trim_end_matches('/'))
    }

    /// The image files of `folder` as (stem, name), sorted by name; empty when it cannot be
    /// listed.
    fn listing(&mut self, folder: &Path) -> &[(String, String)] {
        if let Some(at) = self.listings.iter().position(|(f, _)| f == folder) {
            let entry = self.listings.remove(at).expect("found just now");
            self.listings.push_back(entry);
        } else {
            let mut files: Vec<(String, String)> = std::fs::read_dir(folder)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.path().is_file())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter_map(|name| {
                    let (stem, ext) = name.rsplit_once('.')?;
                    let image = IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(ext));
                    (image && !stem.is_empty()).then(|| (stem.to_string(), name.clone()))
                })
                .collect();
            files.sort_by(|a, b| a.1.cmp(&b.1));
            if self.listings.len() == LISTINGS_KEPT {
                self.listings.pop_front();
            }
            self.listings.push_back((folder.to_path_buf(), files));
        }
        &self.listings.back().expect("pushed just now").1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, rel: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    fn paired(refs: &mut RefDir, key: &str) -> Result<String, String> {
        let mut it = Item::for_test(key);
        refs.pair(&mut it, key);
        match (it.reference, it.problem) {
            (Some(r), None) => Ok(r.display),
            (None, Some(p)) => Err(p),
            other => panic!("both or neither: {other:?}"),
        }
    }

    #[test]
    fn the_same_relative_path_pairs_first_then_the_one_file_with_the_same_stem() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        for f in [
            "a.jpg",
            "a.png",
            "q3/b.JPEG",
            "c.jpg",
            "c.webp",
            "user-42.jpg",
            "d.txt",
        ] {
            touch(d, f);
        }
        let mut refs = RefDir::open(d).unwrap();
        let shown = d.display().to_string();
        // Rule 1: the exact path wins even though a.png shares the stem.
        assert_eq!(
            paired(&mut refs, "a.jpg").unwrap(),
            format!("{shown}/a.jpg")
        );
        // Rule 2: another extension, in any case, in the key's folder.
        assert_eq!(
            paired(&mut refs, "q3/b.png").unwrap(),
            format!("{shown}/q3/b.JPEG")
        );
        // A manifest id without an extension.
        assert_eq!(
            paired(&mut refs, "user-42").unwrap(),
            format!("{shown}/user-42.jpg")
        );
        // Two candidates: ambiguous, both named.
        let e = paired(&mut refs, "c.tiff").unwrap_err();
        assert!(
            e.contains("ambiguous") && e.contains("c.jpg, c.webp"),
            "{e}"
        );
        // Only images count: d.txt is no reference.
        let e = paired(&mut refs, "d.png").unwrap_err();
        assert!(e.starts_with("no reference image: neither"), "{e}");
        // Another folder does not count.
        assert!(paired(&mut refs, "b.jpg").is_err());
    }

    #[test]
    fn a_key_that_would_leave_the_folder_names_no_reference() {
        let tmp = tempfile::tempdir().unwrap();
        touch(tmp.path(), "in/x.jpg");
        let mut refs = RefDir::open(&tmp.path().join("in")).unwrap();
        for key in ["../in/x.jpg", "/etc/passwd", "a/../../x.jpg", ""] {
            let e = paired(&mut refs, key).unwrap_err();
            assert!(
                e.contains("cannot name a file under --ref-dir"),
                "{key}: {e}"
            );
        }
    }

    #[test]
    fn a_bad_row_keeps_its_problem_and_gets_no_reference() {
        let tmp = tempfile::tempdir().unwrap();
        touch(tmp.path(), "a.jpg");
        let mut refs = RefDir::open(tmp.path()).unwrap();
        let mut it = Item::for_test("a.jpg");
        it.problem = Some("row 3: the path cell is empty".into());
        refs.pair(&mut it, "a.jpg");
        assert!(it.reference.is_none());
        assert_eq!(it.problem.as_deref(), Some("row 3: the path cell is empty"));
    }

    #[test]
    fn a_ref_dir_inside_a_source_folder_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        touch(tmp.path(), "src/ids/a.jpg");
        touch(tmp.path(), "other/a.jpg");
        let inside = RefDir::open(&tmp.path().join("src/ids")).unwrap();
        for source in ["src", "src/ids"] {
            let e = inside
                .outside(&tmp.path().join(source), source)
                .unwrap_err();
            assert!(e.to_string().contains("is inside the source"), "{e}");
        }
        let apart = RefDir::open(&tmp.path().join("other")).unwrap();
        assert!(apart.outside(&tmp.path().join("src"), "src").is_ok());
    }

    #[test]
    fn a_missing_or_file_ref_dir_is_refused_up_front() {
        let tmp = tempfile::tempdir().unwrap();
        touch(tmp.path(), "f.jpg");
        let e = RefDir::open(&tmp.path().join("nope")).err().unwrap();
        assert!(e.to_string().ends_with(": no such folder"), "{e}");
        let e = RefDir::open(&tmp.path().join("f.jpg")).err().unwrap();
        assert!(e.to_string().ends_with(": not a folder"), "{e}");
        for typed in [
            tmp.path().join("./refs/"),
            tmp.path().join("refs//"),
            tmp.path().join("refs"),
        ] {
            touch(tmp.path(), "refs/r.jpg");
            let mut refs = RefDir::open(&typed).unwrap();
            let shown = tmp.path().join("refs/r.jpg").display().to_string();
            assert_eq!(paired(&mut refs, "r.jpg").unwrap(), shown, "{typed:?}");
        }
        let e = RefDir::open(Path::new("s3://bucket/ids/")).err().unwrap();
        assert!(
            e.to_string()
                .starts_with("--ref-dir s3://bucket/ids/: a bucket prefix cannot be"),
            "{e}"
        );
    }
}
