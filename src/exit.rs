//! Exit codes: the contract with scripts and cron jobs (documented in the README), as one enum.

/// Declares [`Exit`] and the list of all its values from one table.
macro_rules! exit_codes {
    ($($name:ident = $code:literal,)*) => {
        /// How the process ends. The numbers are a public contract; never renumber.
        ///
        /// - 0 `Ok`: every item has a result (scan), or the image was Approved (check).
        /// - 1 `SomeFailed`: finished, but some items have no result (scan), or the image was
        ///   Declined (check).
        /// - 2 `Usage`: usage or configuration error, or a bad local file for `check`; nothing
        ///   was sent.
        /// - 3 `Auth`: stopped, the API refused the key, the permission, or the endpoint (401,
        ///   403, 404).
        /// - 4 `Credits`: stopped, out of credits (402, 403 credits) or the --max-requests
        ///   budget was reached.
        /// - 5 `ApiFailed`: `check` only, the API kept failing after every retry.
        /// - 6 `Io`: a local I/O failure (disk full, out dir unwritable, journal not a file):
        ///   the run stopped; every record written before is kept.
        /// - 7 `Storage`: object storage refused the credentials or the bucket.
        /// - 8 `Verify`: verification failed (broken journal chain or seal, missing or
        ///   mismatched shard, caches that contradict the journal, a reconciliation that does
        ///   not close), in `scan` and `report` alike.
        /// - 9 `Incomplete`: the population is incomplete: a source could not be read to its
        ///   end (a bucket listing that stopped before its last page, after the retries). What
        ///   was seen was screened; rerun to continue.
        /// - 70 `Internal`: a bug, a task panicked or an invariant broke.
        /// - 130 `Interrupted`: Ctrl-C (SIGINT). 143 `Terminated`: SIGTERM.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[repr(i32)]
        pub enum Exit {
            $($name = $code,)*
        }

        impl Exit {
            /// Every exit code, in numeric order.
            pub const ALL: &[Exit] = &[$(Exit::$name),*];
        }
    };
}

exit_codes! {
    Ok = 0, SomeFailed = 1, Usage = 2, Auth = 3, Credits = 4, ApiFailed = 5, Io = 6, Storage = 7,
    Verify = 8, Incomplete = 9, Internal = 70, Interrupted = 130, Terminated = 143,
}

impl Exit {
    pub const fn code(self) -> i32 {
        self as i32
    }
}

impl TryFrom<i32> for Exit {
    type Error = i32;

    /// The exit code of this number (as a journal's end line records it).
    fn try_from(code: i32) -> Result<Self, i32> {
        Exit::ALL
            .iter()
            .copied()
            .find(|e| e.code() == code)
            .ok_or(code)
    }
}

impl From<Exit> for i32 {
    fn from(e: Exit) -> i32 {
        e.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_documented_numbers() {
        let numbers = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 70, 130, 143];
        let all = Exit::ALL.iter().copied().zip(numbers);
        for (e, n) in all {
            assert_eq!(e.code(), n, "{e:?}");
            assert_eq!(Exit::try_from(n), Ok(e));
        }
        assert_eq!(Exit::try_from(10), Err(10));
    }
}
