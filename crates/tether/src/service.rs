//! What a service is, as both sides see it: its key and its methods.

use std::fmt;

/// Identifies a service: name, version and group. A consumer reaches only providers whose key
/// is equal to its own; the empty string is a version or group like any other.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    name: String,
    version: String,
    group: String,
}

impl ServiceKey {
    /// A key with the empty version and group.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: String::new(),
            group: String::new(),
        }
    }

    /// This key with `version`.
    pub fn with_version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// This key with `group`.
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// The service name, such as `demo.Calculator`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The group.
    pub fn group(&self) -> &str {
        &self.group
    }
}

impl fmt::Display for ServiceKey {
    /// `group/name:version`, leaving out what is empty, as Dubbo prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.group.is_empty() {
            write!(f, "{}/", self.group)?;
        }
        f.write_str(&self.name)?;
        if !self.version.is_empty() {
            write!(f, ":{}", self.version)?;
        }
        Ok(())
    }
}

/// A service as `#[tether::service]` describes it, known at compile time.
#[derive(Debug)]
pub struct ServiceDescriptor {
    name: &'static str,
    version: &'static str,
    group: &'static str,
    methods: &'static [MethodDescriptor],
}

impl ServiceDescriptor {
    /// A descriptor; generated code calls this.
    pub const fn new(
        name: &'static str,
        version: &'static str,
        group: &'static str,
        methods: &'static [MethodDescriptor],
    ) -> Self {
        Self {
            name,
            version,
            group,
            methods,
        }
    }

    /// The service name.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The version.
    pub const fn version(&self) -> &'static str {
        self.version
    }

    /// The group.
    pub const fn group(&self) -> &'static str {
        self.group
    }

    /// The methods, in declaration order.
    pub const fn methods(&self) -> &'static [MethodDescriptor] {
        self.methods
    }

    /// The method called `name`.
    pub fn method(&self, name: &str) -> Option<&'static MethodDescriptor> {
        self.methods.iter().find(|m| m.name == name)
    }

    /// The key this service is served under.
    pub fn key(&self) -> ServiceKey {
        ServiceKey::new(self.name)
            .with_version(self.version)
            .with_group(self.group)
    }
}

/// One method of a service.
#[derive(Debug, Clone, Copy)]
pub struct MethodDescriptor {
    name: &'static str,
    oneway: bool,
    idempotent: bool,
}

impl MethodDescriptor {
    /// A method that answers and is not idempotent.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            oneway: false,
            idempotent: false,
        }
    }

    /// Marks the method `#[oneway]`: the server sends no response.
    pub const fn oneway(mut self) -> Self {
        self.oneway = true;
        self
    }

    /// Marks the method `#[idempotent]`: running it twice is safe, so it may be retried.
    pub const fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// The method name.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// Whether the method is oneway.
    pub const fn is_oneway(&self) -> bool {
        self.oneway
    }

    /// Whether the method is idempotent.
    pub const fn is_idempotent(&self) -> bool {
        self.idempotent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_displays_like_dubbo() {
        assert_eq!(ServiceKey::new("a.B").to_string(), "a.B");
        assert_eq!(
            ServiceKey::new("a.B")
                .with_version("1.0")
                .with_group("g")
                .to_string(),
            "g/a.B:1.0"
        );
    }
}
