//! A trivial shard state for the log's tests: the set of names created, in log order.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;

use kiseki_log::{Applied, Delta, DeltaOutcome, NewNode, Owner, ShardState, SnapshotError};
use kiseki_types::{ErrorKind, InodeId, NamespaceError, Timestamp};

/// Names created by `Create` deltas, each with the log index that created it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamesState {
    pub names: BTreeMap<String, u64>,
    pub applied: u64,
}

impl ShardState for NamesState {
    fn apply(&mut self, log_index: u64, delta: &Delta) -> DeltaOutcome {
        self.applied += 1;
        match delta {
            Delta::Create { name, .. } => {
                if self.names.contains_key(name) {
                    return Err(NamespaceError::new(ErrorKind::AlreadyExists, name.clone()));
                }
                self.names.insert(name.clone(), log_index);
                Ok(Applied {
                    inode: Some(InodeId::new(0, self.names.len() as u64 + 1)),
                })
            }
            _ => Ok(Applied { inode: None }),
        }
    }

    fn encode_snapshot(&self) -> Vec<u8> {
        let value = (&self.names, self.applied);
        bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap()
    }

    fn restore_snapshot(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let ((names, applied), _): ((BTreeMap<String, u64>, u64), usize) =
            bincode::serde::decode_from_slice(bytes, bincode::config::standard())
                .map_err(|error| SnapshotError::Corrupt(error.to_string()))?;
        self.names = names;
        self.applied = applied;
        Ok(())
    }

    fn reset(&mut self) {
        *self = NamesState::default();
    }
}

/// An exclusive create of file `name` in the root.
pub fn create(name: &str) -> Delta {
    Delta::Create {
        parent: InodeId::ROOT,
        name: name.to_string(),
        node: NewNode::File,
        mode: 0o644,
        owner: Owner { uid: 0, gid: 0 },
        exclusive: true,
        time: Timestamp(0),
    }
}
