//! The hierarchical layout every backend shares: `/tether/{service}/{version}/{group}/{role}/
//! {host:port}`, with each segment percent-encoded so that any name is a valid path segment or
//! key part, and the empty version or group written as `-`.

use super::{Instance, Role};
use crate::service::ServiceKey;

/// The root of everything tether writes.
pub(crate) const ROOT: &str = "/tether";

/// Encodes one segment: unreserved characters as they are, everything else (including `/`, `%`
/// and a literal `-` alone) percent-encoded; the empty string as `-`.
pub(crate) fn segment(value: &str) -> String {
    if value.is_empty() {
        return "-".to_owned();
    }
    if value == "-" {
        return "%2D".to_owned();
    }
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-' | b'~' | b':') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `/tether/{service}/{version}/{group}`.
pub(crate) fn service_dir(key: &ServiceKey) -> String {
    format!(
        "{ROOT}/{}/{}/{}",
        segment(key.name()),
        segment(key.version()),
        segment(key.group())
    )
}

/// `/tether/{service}/{version}/{group}/{role}`.
pub(crate) fn role_dir(key: &ServiceKey, role: Role) -> String {
    format!("{}/{}", service_dir(key), role.as_str())
}

/// `/tether/{service}/{version}/{group}/{role}/{id}`, the id being `host:port` (see
/// [`Instance::id`]).
pub(crate) fn instance_path(role: Role, instance: &Instance) -> String {
    format!(
        "{}/{}",
        role_dir(&instance.key(), role),
        segment(&instance.id())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_safe_and_distinct() {
        assert_eq!(segment(""), "-");
        assert_eq!(segment("-"), "%2D");
        assert_eq!(segment("demo.Calculator"), "demo.Calculator");
        assert_eq!(segment("a/b c%"), "a%2Fb%20c%25");
        assert_eq!(segment("127.0.0.1:20880"), "127.0.0.1:20880");
        assert_ne!(segment(""), segment("-"));
    }

    #[test]
    fn paths_follow_the_documented_layout() {
        let key = ServiceKey::new("demo.Calculator").with_version("1.0.0");
        let instance = Instance::new(&key, "127.0.0.1", 20880);
        assert_eq!(
            instance_path(Role::Provider, &instance),
            "/tether/demo.Calculator/1.0.0/-/providers/127.0.0.1:20880"
        );
        assert_eq!(
            role_dir(&key, Role::Consumer),
            "/tether/demo.Calculator/1.0.0/-/consumers"
        );
    }
}
