//! Names in a directory and their order. Children are ordered by their *key*: the name for a
//! file or symlink, the name plus `/` for a directory. That is exactly S3 key order for the full
//! paths, so one ordered index answers both `readdir` and `ListObjectsV2`.

use kiseki_types::limits::{NAME_BYTES_MAX, PATH_BYTES_MAX};
use kiseki_types::{ErrorKind, NamespaceError};

/// Checks a single directory entry name.
pub fn validate_name(name: &str) -> Result<(), NamespaceError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(NamespaceError::new(
            ErrorKind::InvalidArgument,
            format!("invalid name {name:?}"),
        ));
    }
    if name.len() > NAME_BYTES_MAX {
        return Err(NamespaceError::new(
            ErrorKind::NameTooLong,
            format!("name of {} bytes exceeds {NAME_BYTES_MAX}", name.len()),
        ));
    }
    Ok(())
}

/// Splits a `/`-separated path (an S3 key) into checked components.
pub fn split_path(path: &str) -> Result<Vec<String>, NamespaceError> {
    if path.len() > PATH_BYTES_MAX {
        return Err(NamespaceError::new(
            ErrorKind::NameTooLong,
            format!("path of {} bytes exceeds {PATH_BYTES_MAX}", path.len()),
        ));
    }
    let components: Vec<String> = path
        .split('/')
        .filter(|part| !part.is_empty())
        .map(str::to_owned)
        .collect();
    for component in &components {
        validate_name(component)?;
    }
    Ok(components)
}

/// The ordering key of a child: `name/` for directories, `name` otherwise.
pub fn child_key(name: &str, is_directory: bool) -> String {
    if is_directory {
        let mut key = String::with_capacity(name.len() + 1);
        key.push_str(name);
        key.push('/');
        key
    } else {
        name.to_owned()
    }
}

/// The name part of a child key.
pub fn name_of_key(key: &str) -> &str {
    key.strip_suffix('/').unwrap_or(key)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(validate_name("a.txt").is_ok());
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert_eq!(
                validate_name(bad).unwrap_err().kind,
                ErrorKind::InvalidArgument,
                "{bad:?}"
            );
        }
        assert_eq!(
            validate_name(&"x".repeat(256)).unwrap_err().kind,
            ErrorKind::NameTooLong
        );
    }

    #[test]
    fn directory_keys_sort_like_s3_keys() {
        // S3 orders "a-c" before "a/b" because '-' < '/'; the child keys must agree.
        assert!(child_key("a-c", false) < child_key("a", true));
        assert!(child_key("a", true) < child_key("a0", false));
        assert_eq!(split_path("/x//y/z").unwrap(), vec!["x", "y", "z"]);
    }
}
