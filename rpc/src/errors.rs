//! brpc's RPC error codes (brpc `errno.proto`), with the same numbers so that an error a
//! Spindle server writes into `RpcResponseMeta.error_code` means the same thing to a brpc C++
//! client, and vice versa.
//!
//! [`ErrorCode`] is the typed form; a code Spindle does not know (a system errno, or a code a
//! newer brpc added) is kept as [`ErrorCode::Other`] and written back unchanged.
//! [`RpcError`] is a code plus the text that travels in `RpcResponseMeta.error_text`.

use std::fmt;

/// The service named in the request is not registered on the server.
pub const ENOSERVICE: i32 = 1001;
/// The service exists but has no such method.
pub const ENOMETHOD: i32 = 1002;
/// The request is malformed (undecodable meta or payload, missing fields).
pub const EREQUEST: i32 = 1003;
/// Authentication of the connection failed.
pub const ERPCAUTH: i32 = 1004;
/// Too many sub-calls of a parallel channel failed.
pub const ETOOMANYFAILS: i32 = 1005;
/// A parallel channel finished before this sub-call did.
pub const EPCHANFINISH: i32 = 1006;
/// A backup request was sent (internal to retry logic).
pub const EBACKUPREQUEST: i32 = 1007;
/// The call did not complete before its deadline.
pub const ERPCTIMEDOUT: i32 = 1008;
/// The connection the call used is broken.
pub const EFAILEDSOCKET: i32 = 1009;
/// An HTTP call failed (non-2xx status or malformed HTTP).
pub const EHTTP: i32 = 1010;
/// Too many bytes are waiting to be written to the connection.
pub const EOVERCROWDED: i32 = 1011;
/// The server hit an internal error.
pub const EINTERNAL: i32 = 2001;
/// The response is malformed.
pub const ERESPONSE: i32 = 2002;
/// The server is stopping and takes no new requests.
pub const ELOGOFF: i32 = 2003;
/// The server or method is at its `max_concurrency`.
pub const ELIMIT: i32 = 2004;
/// The server closed the connection on purpose.
pub const ECLOSE: i32 = 2005;
/// An ITP (inter-process) response failed.
pub const EITP: i32 = 2006;

/// A brpc RPC error code. `Other` preserves any number Spindle does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// `ENOSERVICE` (1001).
    NoService,
    /// `ENOMETHOD` (1002).
    NoMethod,
    /// `EREQUEST` (1003).
    Request,
    /// `ERPCAUTH` (1004).
    RpcAuth,
    /// `ETOOMANYFAILS` (1005).
    TooManyFails,
    /// `EPCHANFINISH` (1006).
    PChanFinish,
    /// `EBACKUPREQUEST` (1007).
    BackupRequest,
    /// `ERPCTIMEDOUT` (1008).
    RpcTimedOut,
    /// `EFAILEDSOCKET` (1009).
    FailedSocket,
    /// `EHTTP` (1010).
    Http,
    /// `EOVERCROWDED` (1011).
    Overcrowded,
    /// `EINTERNAL` (2001).
    Internal,
    /// `ERESPONSE` (2002).
    Response,
    /// `ELOGOFF` (2003).
    LogOff,
    /// `ELIMIT` (2004).
    Limit,
    /// `ECLOSE` (2005).
    Close,
    /// `EITP` (2006).
    Itp,
    /// Any other code (a system errno such as `ECONNREFUSED`, or a code from a newer brpc),
    /// kept as received.
    Other(i32),
}

/// Every named code with its number and brpc name, in numeric order.
const NAMED: [(ErrorCode, i32, &str); 17] = [
    (ErrorCode::NoService, ENOSERVICE, "ENOSERVICE"),
    (ErrorCode::NoMethod, ENOMETHOD, "ENOMETHOD"),
    (ErrorCode::Request, EREQUEST, "EREQUEST"),
    (ErrorCode::RpcAuth, ERPCAUTH, "ERPCAUTH"),
    (ErrorCode::TooManyFails, ETOOMANYFAILS, "ETOOMANYFAILS"),
    (ErrorCode::PChanFinish, EPCHANFINISH, "EPCHANFINISH"),
    (ErrorCode::BackupRequest, EBACKUPREQUEST, "EBACKUPREQUEST"),
    (ErrorCode::RpcTimedOut, ERPCTIMEDOUT, "ERPCTIMEDOUT"),
    (ErrorCode::FailedSocket, EFAILEDSOCKET, "EFAILEDSOCKET"),
    (ErrorCode::Http, EHTTP, "EHTTP"),
    (ErrorCode::Overcrowded, EOVERCROWDED, "EOVERCROWDED"),
    (ErrorCode::Internal, EINTERNAL, "EINTERNAL"),
    (ErrorCode::Response, ERESPONSE, "ERESPONSE"),
    (ErrorCode::LogOff, ELOGOFF, "ELOGOFF"),
    (ErrorCode::Limit, ELIMIT, "ELIMIT"),
    (ErrorCode::Close, ECLOSE, "ECLOSE"),
    (ErrorCode::Itp, EITP, "EITP"),
];

impl ErrorCode {
    /// The number on the wire (`RpcResponseMeta.error_code`).
    pub const fn code(self) -> i32 {
        match self {
            ErrorCode::NoService => ENOSERVICE,
            ErrorCode::NoMethod => ENOMETHOD,
            ErrorCode::Request => EREQUEST,
            ErrorCode::RpcAuth => ERPCAUTH,
            ErrorCode::TooManyFails => ETOOMANYFAILS,
            ErrorCode::PChanFinish => EPCHANFINISH,
            ErrorCode::BackupRequest => EBACKUPREQUEST,
            ErrorCode::RpcTimedOut => ERPCTIMEDOUT,
            ErrorCode::FailedSocket => EFAILEDSOCKET,
            ErrorCode::Http => EHTTP,
            ErrorCode::Overcrowded => EOVERCROWDED,
            ErrorCode::Internal => EINTERNAL,
            ErrorCode::Response => ERESPONSE,
            ErrorCode::LogOff => ELOGOFF,
            ErrorCode::Limit => ELIMIT,
            ErrorCode::Close => ECLOSE,
            ErrorCode::Itp => EITP,
            ErrorCode::Other(n) => n,
        }
    }

    /// The typed form of `code`; never fails (unknown numbers become [`ErrorCode::Other`]), and
    /// `ErrorCode::from_code(n).code() == n` for every `n`.
    pub fn from_code(code: i32) -> ErrorCode {
        NAMED
            .iter()
            .find(|(_, n, _)| *n == code)
            .map_or(ErrorCode::Other(code), |(c, _, _)| *c)
    }

    /// brpc's symbolic name (`"ENOSERVICE"`), or `None` for [`ErrorCode::Other`].
    pub fn name(self) -> Option<&'static str> {
        NAMED
            .iter()
            .find(|(c, _, _)| *c == self)
            .map(|(_, _, name)| *name)
    }

    /// What the code means, in one phrase.
    pub fn description(self) -> &'static str {
        match self {
            ErrorCode::NoService => "no such service on the server",
            ErrorCode::NoMethod => "no such method in the service",
            ErrorCode::Request => "malformed request",
            ErrorCode::RpcAuth => "authentication failed",
            ErrorCode::TooManyFails => "too many sub-calls of the parallel channel failed",
            ErrorCode::PChanFinish => "the parallel channel finished before this sub-call",
            ErrorCode::BackupRequest => "a backup request was sent",
            ErrorCode::RpcTimedOut => "the call timed out",
            ErrorCode::FailedSocket => "the connection is broken",
            ErrorCode::Http => "the HTTP call failed",
            ErrorCode::Overcrowded => "too many bytes are waiting to be written to the connection",
            ErrorCode::Internal => "internal error in the server",
            ErrorCode::Response => "malformed response",
            ErrorCode::LogOff => "the server is stopping",
            ErrorCode::Limit => "the server reached its max_concurrency",
            ErrorCode::Close => "the connection was closed on purpose",
            ErrorCode::Itp => "the ITP response failed",
            ErrorCode::Other(_) => "error code unknown to Spindle",
        }
    }
}

impl From<i32> for ErrorCode {
    fn from(code: i32) -> ErrorCode {
        ErrorCode::from_code(code)
    }
}

impl From<ErrorCode> for i32 {
    fn from(code: ErrorCode) -> i32 {
        code.code()
    }
}

impl fmt::Display for ErrorCode {
    /// `ENOSERVICE(1001): no such service on the server`, or `error 12345: ...` for unknown codes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}({}): {}", self.code(), self.description()),
            None => write!(f, "error {}: {}", self.code(), self.description()),
        }
    }
}

/// An RPC failure: a code plus the human-readable text carried next to it on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    /// The code (`RpcResponseMeta.error_code`).
    pub code: ErrorCode,
    /// Details (`RpcResponseMeta.error_text`); may be empty.
    pub text: String,
}

impl RpcError {
    /// An error with `code` and `text`.
    pub fn new(code: ErrorCode, text: impl Into<String>) -> RpcError {
        RpcError {
            code,
            text: text.into(),
        }
    }
}

impl fmt::Display for RpcError {
    /// brpc's controller style: `[E1003]text`, falling back to the description without text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.text.is_empty() {
            write!(f, "[E{}]{}", self.code.code(), self.code.description())
        } else {
            write!(f, "[E{}]{}", self.code.code(), self.text)
        }
    }
}

impl std::error::Error for RpcError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_brpc() {
        let expected = [
            ("ENOSERVICE", 1001),
            ("ENOMETHOD", 1002),
            ("EREQUEST", 1003),
            ("ERPCAUTH", 1004),
            ("ETOOMANYFAILS", 1005),
            ("EPCHANFINISH", 1006),
            ("EBACKUPREQUEST", 1007),
            ("ERPCTIMEDOUT", 1008),
            ("EFAILEDSOCKET", 1009),
            ("EHTTP", 1010),
            ("EOVERCROWDED", 1011),
            ("EINTERNAL", 2001),
            ("ERESPONSE", 2002),
            ("ELOGOFF", 2003),
            ("ELIMIT", 2004),
            ("ECLOSE", 2005),
            ("EITP", 2006),
        ];
        for (name, n) in expected {
            let c = ErrorCode::from_code(n);
            assert_eq!(c.name(), Some(name));
            assert_eq!(c.code(), n);
            assert!(!matches!(c, ErrorCode::Other(_)));
        }
    }

    #[test]
    fn unknown_codes_are_preserved() {
        for n in [0, -1, 111, 1012, 1999, 2007, i32::MAX, i32::MIN] {
            let c = ErrorCode::from(n);
            assert_eq!(c, ErrorCode::Other(n));
            assert_eq!(i32::from(c), n);
            assert_eq!(c.name(), None);
        }
    }

    #[test]
    fn display() {
        assert_eq!(
            ErrorCode::NoService.to_string(),
            "ENOSERVICE(1001): no such service on the server"
        );
        assert_eq!(
            ErrorCode::Other(77).to_string(),
            "error 77: error code unknown to Spindle"
        );
        assert_eq!(
            RpcError::new(ErrorCode::Request, "bad meta").to_string(),
            "[E1003]bad meta"
        );
        assert_eq!(
            RpcError::new(ErrorCode::Limit, "").to_string(),
            "[E2004]the server reached its max_concurrency"
        );
    }
}
