//! Connection types (brpc `ConnectionType`): how a channel maps calls onto connections.

use std::fmt;
use std::str::FromStr;

/// How a channel uses connections to one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionType {
    /// One multiplexed connection per server; responses matched by correlation id.
    Single,
    /// One call in flight per connection; idle connections are reused.
    Pooled,
    /// A new connection per call.
    Short,
}

impl ConnectionType {
    /// In the order a channel prefers them when not told otherwise.
    pub const PREFERENCE: [ConnectionType; 3] = [
        ConnectionType::Single,
        ConnectionType::Pooled,
        ConnectionType::Short,
    ];

    /// The bit of this type in a [`ConnectionTypes`] set (brpc's values: 1, 2, 4).
    pub const fn bit(self) -> u8 {
        match self {
            ConnectionType::Single => 1,
            ConnectionType::Pooled => 2,
            ConnectionType::Short => 4,
        }
    }

    /// The option spelling: `"single"`, `"pooled"`, `"short"`.
    pub const fn name(self) -> &'static str {
        match self {
            ConnectionType::Single => "single",
            ConnectionType::Pooled => "pooled",
            ConnectionType::Short => "short",
        }
    }
}

impl fmt::Display for ConnectionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ConnectionType {
    type Err = ConnectionTypeError;

    /// Parses `"single"`, `"pooled"` or `"short"` (case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ConnectionType::PREFERENCE
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| ConnectionTypeError::UnknownName(s.to_owned()))
    }
}

/// The set of connection types a protocol supports (brpc ORs the bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ConnectionTypes(u8);

impl ConnectionTypes {
    /// No type.
    pub const NONE: ConnectionTypes = ConnectionTypes(0);
    /// All three types.
    pub const ALL: ConnectionTypes = ConnectionTypes(7);

    /// The set of `types`.
    pub const fn of(types: &[ConnectionType]) -> ConnectionTypes {
        let mut bits = 0;
        let mut i = 0;
        while i < types.len() {
            bits |= types[i].bit();
            i += 1;
        }
        ConnectionTypes(bits)
    }

    /// Whether `t` is in the set.
    pub const fn contains(self, t: ConnectionType) -> bool {
        self.0 & t.bit() != 0
    }

    /// The type a channel uses: `explicit` if given and supported, else the first of single,
    /// pooled, short in the set. Fails (at channel init, never later) for an unsupported
    /// explicit choice or an empty set; `protocol` names the protocol in the error.
    pub fn select(
        self,
        explicit: Option<ConnectionType>,
        protocol: &str,
    ) -> Result<ConnectionType, ConnectionTypeError> {
        match explicit {
            Some(t) if self.contains(t) => Ok(t),
            Some(t) => Err(ConnectionTypeError::Unsupported {
                requested: t,
                protocol: protocol.to_owned(),
                supported: self,
            }),
            None => ConnectionType::PREFERENCE
                .into_iter()
                .find(|t| self.contains(*t))
                .ok_or_else(|| ConnectionTypeError::NoneSupported(protocol.to_owned())),
        }
    }
}

impl fmt::Display for ConnectionTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = ConnectionType::PREFERENCE
            .into_iter()
            .filter(|t| self.contains(*t))
            .map(ConnectionType::name)
            .collect();
        write!(f, "{{{}}}", names.join(", "))
    }
}

/// Why a connection type could not be chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionTypeError {
    /// The channel asked for a type the protocol does not support.
    Unsupported {
        /// The type the channel options asked for.
        requested: ConnectionType,
        /// The protocol's name.
        protocol: String,
        /// What the protocol supports.
        supported: ConnectionTypes,
    },
    /// The protocol supports no connection type (it is server-only).
    NoneSupported(String),
    /// The option string is not `single`, `pooled` or `short`.
    UnknownName(String),
}

impl fmt::Display for ConnectionTypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionTypeError::Unsupported {
                requested,
                protocol,
                supported,
            } => write!(
                f,
                "connection_type={requested} is not supported by protocol {protocol} \
                 (supported: {supported})"
            ),
            ConnectionTypeError::NoneSupported(p) => {
                write!(f, "protocol {p} supports no client connection type")
            }
            ConnectionTypeError::UnknownName(s) => write!(
                f,
                "connection_type=\"{s}\" is not one of single, pooled, short"
            ),
        }
    }
}

impl std::error::Error for ConnectionTypeError {}

#[cfg(test)]
mod tests {
    use super::*;
    use ConnectionType::*;

    #[test]
    fn first_supported_is_chosen() {
        assert_eq!(ConnectionTypes::ALL.select(None, "p"), Ok(Single));
        assert_eq!(
            ConnectionTypes::of(&[Short, Pooled]).select(None, "p"),
            Ok(Pooled)
        );
        assert_eq!(ConnectionTypes::of(&[Short]).select(None, "p"), Ok(Short));
        assert_eq!(
            ConnectionTypes::NONE.select(None, "p"),
            Err(ConnectionTypeError::NoneSupported("p".into()))
        );
    }

    #[test]
    fn explicit_choice() {
        let http = ConnectionTypes::of(&[Pooled, Short]);
        assert_eq!(http.select(Some(Short), "http"), Ok(Short));
        let err = http.select(Some(Single), "http").unwrap_err();
        assert_eq!(
            err.to_string(),
            "connection_type=single is not supported by protocol http (supported: {pooled, short})"
        );
    }

    #[test]
    fn names() {
        assert_eq!("Pooled".parse::<ConnectionType>(), Ok(Pooled));
        assert!("multi"
            .parse::<ConnectionType>()
            .unwrap_err()
            .to_string()
            .contains("multi"));
        assert_eq!(ConnectionTypes::ALL.to_string(), "{single, pooled, short}");
    }
}
