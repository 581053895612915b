//! Exit codes: the contract with scripts and cron jobs (documented in the README), as one enum.

/// Declares [`Exit`] and the list of all its values from one table.
macro_rules! exit_codes {
    ($($(#[$doc:meta])* $name:ident = $code:literal,)*) => {
        /// How the process ends. The numbers are a public contract; never renumber.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[repr(i32)]
        pub enum Exit {
            $($(#[$doc])* $name = $code,)*
        }

        impl Exit {
            /// Every exit code, in numeric order.
            pub const ALL: &[Exit] = &[$(Exit::$name),*];
        }
    };
}

exit_codes! {
    /// Every item has a result (scan), or the image was Approved (check).
    Ok = 0,
    /// Finished, but some items have no result (scan), or the image was Declined (check).
    SomeFailed = 1,
    /// Usage or configuration error, or a bad local file for `check`; nothing was sent.
    Usage = 2,
    /// Stopped: the API refused the key, the permission, or the endpoint (401, 403, 404).
    Auth = 3,
    /// Stopped: out of credits (402, 403 credits) or the --max-requests budget was reached.
    Credits = 4,
    /// `check` only: the API kept failing after every retry.
    ApiFailed = 5,
    /// A local I/O failure (disk full, out dir unwritable, journal not a file): the run
    /// stopped; every record written before is kept.
    Io = 6,
    /// Object storage refused the credentials or the bucket.
    Storage = 7,
    /// `report` verification failed (broken journal chain, missing or mismatched shard, a
    /// reconciliation that does not close).
    Verify = 8,
    /// The population is incomplete: a source could not be read to its end (a bucket listing
    /// that stopped before its last page, after the retries). What was seen was screened;
    /// rerun to continue.
    Incomplete = 9,
    /// A bug: a task panicked or an invariant broke.
    Internal = 70,
    /// Interrupted by Ctrl-C (SIGINT).
    Interrupted = 130,
    /// Terminated by SIGTERM.
    Terminated = 143,
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
