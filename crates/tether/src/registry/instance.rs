use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize};

use crate::service::ServiceKey;

/// Whether an announcement is a provider's or a consumer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Serves the service; consumers call it.
    Provider,
    /// Calls the service; registered so operators can see who calls what.
    Consumer,
}

impl Role {
    /// The path segment of the role: `providers` or `consumers`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provider => "providers",
            Self::Consumer => "consumers",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One provider or consumer of a service, as stored in a registry (as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Instance {
    /// Service name.
    pub service: String,
    /// Service version.
    #[serde(default)]
    pub version: String,
    /// Service group.
    #[serde(default)]
    pub group: String,
    /// The host consumers connect to (a provider's advertised address).
    pub host: String,
    /// The port consumers connect to; 0 for a consumer.
    pub port: u16,
    /// The share of calls this provider should get relative to others. Default: 100.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// The serializations the provider speaks, by name (`bincode`, `json`, …).
    #[serde(default)]
    pub serializations: Vec<String>,
    /// The methods of the service.
    #[serde(default)]
    pub methods: Vec<String>,
    /// The wire protocol version spoken.
    #[serde(default = "default_protocol_version")]
    pub protocol_version: u8,
    /// When the process started, in milliseconds since the Unix epoch (weights warm up from it).
    #[serde(default)]
    pub start_time: u64,
    /// Free-form labels.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

fn default_weight() -> u32 {
    100
}

fn default_protocol_version() -> u8 {
    crate::protocol::VERSION
}

impl Instance {
    /// An instance of the service `key` at `host:port`, with the default weight, the current
    /// time as start time, and nothing else set.
    pub fn new(key: &ServiceKey, host: impl Into<String>, port: u16) -> Self {
        let start_time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
        Self {
            service: key.name().to_owned(),
            version: key.version().to_owned(),
            group: key.group().to_owned(),
            host: host.into(),
            port,
            weight: default_weight(),
            serializations: Vec::new(),
            methods: Vec::new(),
            protocol_version: default_protocol_version(),
            start_time,
            tags: BTreeMap::new(),
        }
    }

    /// The service this instance provides or consumes.
    pub fn key(&self) -> ServiceKey {
        ServiceKey::new(&self.service)
            .with_version(&self.version)
            .with_group(&self.group)
    }

    /// `host:port`, which identifies the instance within its service and role.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// What names the instance among those of its service and role: `host:port`, or for an
    /// instance with a `pid` tag (a consumer, which listens on no port) `host:port@pid`, so that
    /// two consumers on one host stay apart.
    pub fn id(&self) -> String {
        match self.tags.get("pid") {
            Some(pid) => format!("{}@{pid}", self.address()),
            None => self.address(),
        }
    }

    /// A consumer of `key` in this process: port 0 and the process id as its `pid` tag.
    pub fn consumer(key: &ServiceKey, host: impl Into<String>) -> Self {
        let mut instance = Self::new(key, host, 0);
        instance
            .tags
            .insert("pid".to_owned(), std::process::id().to_string());
        instance
    }

    /// The JSON stored in a registry.
    pub fn to_json(&self) -> String {
        // Serializing plain strings, numbers and maps of strings cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads an instance from stored JSON.
    pub fn from_json(json: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(json)
    }
}
