//! The pod's kernel state is made by felix ([`brindle_felix::podnet`], run in the pod's
//! namespace through [`brindle_felix::netns`], sysctls from [`brindle_felix::sysctl`]);
//! this is the CNI glue: felix's errors as CNI errors.

use super::error::{code, CniError};
use brindle_felix::podnet::{Error, REQUEST_TIMEOUT};
use brindle_felix::sysctl::WriteError;

impl From<WriteError> for CniError {
    fn from(e: WriteError) -> CniError {
        CniError::io(e.to_string())
    }
}

impl From<Error> for CniError {
    fn from(e: Error) -> CniError {
        match &e {
            Error::OpenNetns { path, source } => CniError::new(
                code::NETNS,
                format!(
                    "cannot open the pod's network namespace {}: {source}",
                    path.display()
                ),
            ),
            Error::EnterNetns(source) => CniError::new(
                code::NETNS,
                format!("cannot enter the pod's network namespace: {source}"),
            ),
            Error::Netlink { what, .. } if e.timed_out() => CniError::new(
                code::TRY_AGAIN,
                format!(
                    "{what}: no answer from the kernel within {} s",
                    REQUEST_TIMEOUT.as_secs()
                ),
            ),
            Error::Netlink { .. } => {
                let errno = e.errno();
                let err = CniError::netlink(e.to_string());
                match errno {
                    Some(n) => err.with_details(format!("errno {n}")),
                    None => err,
                }
            }
            Error::Missing(_) => CniError::netlink(e.to_string()),
            Error::Internal(_) => CniError::new(code::INTERNAL, e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn codes() {
        let nl = |source| Error::Netlink {
            what: "adding route".into(),
            source,
        };
        let c = CniError::from(nl(io::Error::from_raw_os_error(libc::ENETDOWN)));
        assert_eq!((c.code, c.details.as_str()), (code::NETLINK, "errno 100"));
        let c = CniError::from(nl(io::Error::new(io::ErrorKind::TimedOut, "x")));
        assert_eq!(c.code, code::TRY_AGAIN);
        assert_eq!(c.msg, "adding route: no answer from the kernel within 10 s");
        let c = CniError::from(Error::OpenNetns {
            path: "/run/netns/x".into(),
            source: io::Error::from_raw_os_error(libc::ENOENT),
        });
        assert_eq!(c.code, code::NETNS);
        assert!(c
            .msg
            .starts_with("cannot open the pod's network namespace /run/netns/x: "));
    }
}
