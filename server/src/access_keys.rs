//! S3 access keys of tenant workloads, kept in `access-keys.yaml` (mode 0600) in the data dir
//! until the control plane owns identities. The S3 gateway authenticates against them.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};

/// One access key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessKey {
    /// Public id (AWS access key id).
    pub access_key_id: String,
    /// Secret (AWS secret access key).
    pub secret_access_key: String,
    /// Tenant the key acts for.
    pub tenant: u64,
    /// Workload the key belongs to.
    pub workload: String,
}

/// The access keys of this server.
pub struct AccessKeys {
    path: PathBuf,
    keys: Vec<AccessKey>,
}

impl AccessKeys {
    /// Loads `access-keys.yaml` from `data_dir` (empty if missing).
    pub fn load(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join("access-keys.yaml");
        let keys = match fs::read_to_string(&path) {
            Ok(text) => serde_yaml::from_str(&text)
                .with_context(|| format!("invalid {}", path.display()))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
        };
        Ok(AccessKeys { path, keys })
    }

    /// The key of `tenant`'s `workload`, created and saved if it has none.
    pub fn ensure(&mut self, tenant: u64, workload: &str) -> anyhow::Result<AccessKey> {
        if let Some(key) = self
            .keys
            .iter()
            .find(|key| key.tenant == tenant && key.workload == workload)
        {
            return Ok(key.clone());
        }
        let mut rng = rand::rng();
        let key = AccessKey {
            access_key_id: format!(
                "KSK{}",
                Alphanumeric.sample_string(&mut rng, 17).to_uppercase()
            ),
            secret_access_key: Alphanumeric.sample_string(&mut rng, 40),
            tenant,
            workload: workload.to_owned(),
        };
        self.keys.push(key.clone());
        self.save()?;
        Ok(key)
    }

    /// The key whose public id is `access_key_id`.
    pub fn find(&self, access_key_id: &str) -> Option<&AccessKey> {
        self.keys
            .iter()
            .find(|key| key.access_key_id == access_key_id)
    }

    fn save(&self) -> anyhow::Result<()> {
        let text = serde_yaml::to_string(&self.keys).context("encoding access keys")?;
        let temp = self.path.with_extension("yaml.tmp");
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)
            .with_context(|| format!("writing {}", temp.display()))?;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&temp, &self.path)
            .with_context(|| format!("replacing {}", self.path.display()))?;
        if let Some(dir) = self.path.parent() {
            fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = AccessKeys::load(dir.path())
            .unwrap()
            .ensure(1, "dev")
            .unwrap();
        let again = AccessKeys::load(dir.path())
            .unwrap()
            .ensure(1, "dev")
            .unwrap();
        assert_eq!(first, again);
        assert_eq!(first.secret_access_key.len(), 40);
        let mode = fs::metadata(dir.path().join("access-keys.yaml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let other = AccessKeys::load(dir.path())
            .unwrap()
            .ensure(2, "dev")
            .unwrap();
        assert_ne!(other.access_key_id, first.access_key_id);
    }
}
