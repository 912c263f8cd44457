//! Dataset names → namespace paths, and finding a dataset in the namespace. A dataset is a
//! directory tree (`/bucket/dir`) or a key prefix (`/bucket/logs/2026-` names every entry of
//! `/bucket/logs` starting with `2026-`); a name from the node config stands for its path, and
//! `s3://bucket/prefix` is the same namespace as `/bucket/prefix`.

use std::collections::BTreeMap;
use std::path::Path;

use kiseki_types::{ErrorKind, InodeId, NamespaceError};

use crate::client::{Client, DatasetWalk};
use crate::transport::Node;

/// Turns what a user typed into a normalized namespace path (`/bucket/prefix`, no trailing
/// slash): a configured dataset name, `s3://bucket/prefix`, an absolute namespace path, or a
/// path under the mount point.
pub fn namespace_path(
    spec: &str,
    names: &BTreeMap<String, String>,
    mount_point: &Path,
) -> Result<String, String> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err("empty dataset name".into());
    }
    let raw = if let Some(path) = names.get(spec) {
        path.as_str()
    } else {
        spec
    };
    let path = if let Some(rest) = raw.strip_prefix("s3://") {
        format!("/{rest}")
    } else if raw.starts_with('/') {
        let mount = mount_point.to_string_lossy();
        match raw.strip_prefix(&*mount) {
            Some(rest) if mount != "/" && (rest.is_empty() || rest.starts_with('/')) => {
                format!("/{rest}")
            }
            _ => raw.to_owned(),
        }
    } else {
        return Err(format!(
            "unknown dataset {spec:?}: not a dataset name from the node config, an absolute \
             namespace path (/bucket/prefix) or an s3://bucket/prefix URL"
        ));
    };
    let mut parts = Vec::new();
    for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if part == ".." {
            return Err(format!("dataset path {raw:?} may not contain \"..\""));
        }
        parts.push(part);
    }
    Ok(format!("/{}", parts.join("/")))
}

/// Finds dataset `path` in the namespace and walks it: the tree under it, or the entries of
/// its parent directory whose names start with its last component.
pub async fn walk(client: &Client, spec: &str, path: &str) -> Result<DatasetWalk, NamespaceError> {
    let missing = || {
        NamespaceError::new(
            ErrorKind::NotFound,
            format!("dataset {spec} does not exist ({path} is not in the namespace)"),
        )
    };
    match client.resolve_path(path).await {
        Ok(chain) => client.walk_dataset(&chain, None).await,
        Err(error) if error.kind == ErrorKind::NotFound => {
            let (parent, prefix) = path.rsplit_once('/').ok_or_else(missing)?;
            if prefix.is_empty() {
                return Err(missing());
            }
            let chain = match client.resolve_path(parent).await {
                Ok(chain) => chain,
                Err(error) if error.kind == ErrorKind::NotFound => return Err(missing()),
                Err(error) => return Err(error),
            };
            let is_directory =
                chain
                    .last()
                    .is_some_and(|(_, _, node): &(InodeId, String, Node)| {
                        node.attrs.kind == kiseki_types::FileKind::Directory
                    });
            if !is_directory {
                return Err(missing());
            }
            let walk = client.walk_dataset(&chain, Some(prefix)).await?;
            if walk.snapshot.nodes.len() <= chain.len() {
                return Err(missing());
            }
            Ok(walk)
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn names_urls_and_mount_paths_map_to_the_namespace() {
        let names = BTreeMap::from([("imagenet".to_owned(), "s3://ml/imagenet/".to_owned())]);
        let mount = Path::new("/kiseki");
        let path = |spec| namespace_path(spec, &names, mount);
        assert_eq!(path("imagenet").as_deref(), Ok("/ml/imagenet"));
        assert_eq!(path("s3://b/p").as_deref(), Ok("/b/p"));
        assert_eq!(path("/b//p/").as_deref(), Ok("/b/p"));
        assert_eq!(path("/kiseki/b/p").as_deref(), Ok("/b/p"));
        assert_eq!(path("/kisekiX/p").as_deref(), Ok("/kisekiX/p"));
        assert!(path("nosuchname").unwrap_err().contains("nosuchname"));
        assert!(path("/b/../etc").is_err());
    }
}
