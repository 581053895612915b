//! `--include GLOB` / `--exclude GLOB`: which keys of a folder or bucket prefix a run takes,
//! matched against the key relative to the folder or prefix ('/' separators). What they leave
//! out is listed as ignored, with the pattern that decided it.

use globset::{Glob, GlobSet, GlobSetBuilder};

/// The patterns of a run (empty: everything is taken).
#[derive(Debug, Clone, Default)]
pub struct Filters {
    include: Vec<String>,
    exclude: Vec<String>,
    include_set: Option<GlobSet>,
    exclude_set: Option<GlobSet>,
}

/// A pattern that is not a glob.
#[derive(Debug, thiserror::Error)]
#[error("{flag} {pattern:?} is not a valid glob: {reason}")]
pub struct FilterError {
    pub flag: &'static str,
    pub pattern: String,
    pub reason: String,
}

impl PartialEq for Filters {
    fn eq(&self, other: &Self) -> bool {
        self.include == other.include && self.exclude == other.exclude
    }
}

impl Filters {
    /// Patterns as given (`*` and `?` match any characters, `/` included; `**` any folders;
    /// `{a,b}` either; `[abc]` one of; case-sensitive, as keys are).
    pub fn new(include: Vec<String>, exclude: Vec<String>) -> Result<Self, FilterError> {
        let set = |flag: &'static str, patterns: &[String]| -> Result<_, FilterError> {
            if patterns.is_empty() {
                return Ok(None);
            }
            let mut b = GlobSetBuilder::new();
            for p in patterns {
                if p.is_empty() {
                    return Err(FilterError {
                        flag,
                        pattern: p.clone(),
                        reason: "the pattern is empty".into(),
                    });
                }
                let glob = Glob::new(p).map_err(|e| FilterError {
                    flag,
                    pattern: p.clone(),
                    reason: e.kind().to_string(),
                })?;
                b.add(glob);
            }
            b.build().map(Some).map_err(|e| FilterError {
                flag,
                pattern: patterns.join(" "),
                reason: e.to_string(),
            })
        };
        Ok(Filters {
            include_set: set("--include", &include)?,
            exclude_set: set("--exclude", &exclude)?,
            include,
            exclude,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    pub fn include(&self) -> &[String] {
        &self.include
    }

    pub fn exclude(&self) -> &[String] {
        &self.exclude
    }

    /// `Some(reason)` when `key` (relative to its folder or prefix) is left out: the first
    /// `--exclude` pattern it matches, or no `--include` pattern matching it.
    pub fn leaves_out(&self, key: &str) -> Option<String> {
        if let Some(set) = &self.exclude_set
            && let Some(i) = set.matches(key).into_iter().min()
        {
            return Some(format!("excluded by --exclude {}", self.exclude[i]));
        }
        if let Some(set) = &self.include_set
            && !set.is_match(key)
        {
            return Some(format!(
                "not matched by --include {}",
                self.include.join(" or --include ")
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(include: &[&str], exclude: &[&str]) -> Filters {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Filters::new(s(include), s(exclude)).unwrap()
    }

    #[test]
    fn include_and_exclude_decide_with_the_pattern_named() {
        let filters = f(&["*.jpg"], &["tmp/**"]);
        assert_eq!(filters.leaves_out("a.jpg"), None);
        assert_eq!(
            filters.leaves_out("2026/q1/a.jpg"),
            None,
            "* crosses folders"
        );
        assert_eq!(
            filters.leaves_out("tmp/x/a.jpg").unwrap(),
            "excluded by --exclude tmp/**"
        );
        assert_eq!(
            filters.leaves_out("a.png").unwrap(),
            "not matched by --include *.jpg"
        );
        assert_eq!(
            filters.leaves_out("A.JPG").unwrap(),
            "not matched by --include *.jpg",
            "case-sensitive, as keys are"
        );
        let two = f(&["*.jpg", "*.png"], &[]);
        assert_eq!(two.leaves_out("a.png"), None);
        assert_eq!(
            two.leaves_out("a.tif").unwrap(),
            "not matched by --include *.jpg or --include *.png"
        );
        let ex = f(&[], &["*/raw/*", "*.tmp.jpg"]);
        assert_eq!(
            ex.leaves_out("x/raw/y.tmp.jpg").unwrap(),
            "excluded by --exclude */raw/*",
            "the first pattern given is named"
        );
        assert!(f(&[], &[]).is_empty() && f(&[], &[]).leaves_out("x").is_none());
    }

    #[test]
    fn bad_patterns_are_refused_clearly() {
        let e = Filters::new(vec!["a[".into()], vec![]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--include \"a[\" is not a valid glob: "),
            "{e}"
        );
        let e = Filters::new(vec![], vec!["".into()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--exclude \"\" is not a valid glob: the pattern is empty"
        );
        let e = Filters::new(vec![], vec!["{a,b".into()]).unwrap_err();
        assert!(e.to_string().starts_with("--exclude \"{a,b\""), "{e}");
    }
}
