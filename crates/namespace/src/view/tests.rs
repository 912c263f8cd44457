//! Semantics of the view, driven by deltas as the log would apply them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use kiseki_log::{Delta, NewNode, Owner, ShardState};
use kiseki_types::{ChunkId, Composition, ErrorKind, Extent, FileKind, InodeId, Timestamp};
use proptest::prelude::*;

use super::{ListEntry, ListRequest, NamespaceView};

const OWNER: Owner = Owner {
    uid: 1000,
    gid: 1000,
};

fn apply(view: &mut NamespaceView, delta: Delta) -> Result<InodeId, ErrorKind> {
    view.apply(1, &delta)
        .map(|applied| applied.inode.unwrap_or(InodeId(0)))
        .map_err(|error| error.kind)
}

fn mkdir(view: &mut NamespaceView, parent: InodeId, name: &str) -> Result<InodeId, ErrorKind> {
    let node = NewNode::Directory;
    apply(
        view,
        Delta::Create {
            parent,
            name: name.into(),
            node,
            mode: 0o755,
            owner: OWNER,
            exclusive: true,
            time: Timestamp(1),
        },
    )
}

fn create(view: &mut NamespaceView, parent: InodeId, name: &str) -> Result<InodeId, ErrorKind> {
    let node = NewNode::File;
    apply(
        view,
        Delta::Create {
            parent,
            name: name.into(),
            node,
            mode: 0o644,
            owner: OWNER,
            exclusive: true,
            time: Timestamp(1),
        },
    )
}

fn put(view: &mut NamespaceView, key: &str, size: u32) -> Result<InodeId, ErrorKind> {
    let extent = Extent {
        file_offset: 0,
        len: size,
        chunk: ChunkId([size as u8; 32]),
        chunk_offset: 0,
    };
    let content = if size == 0 {
        Composition::default()
    } else {
        Composition::from_sequential(vec![extent])
    };
    let path = key.split('/').map(str::to_owned).collect();
    let user_metadata = BTreeMap::new();
    apply(
        view,
        Delta::PutFile {
            path,
            content,
            user_metadata,
            mode: 0o644,
            owner: OWNER,
            time: Timestamp(2),
        },
    )
}

fn rename(
    view: &mut NamespaceView,
    from: (InodeId, &str),
    to: (InodeId, &str),
) -> Result<InodeId, ErrorKind> {
    apply(
        view,
        Delta::Rename {
            from_parent: from.0,
            from_name: from.1.into(),
            to_parent: to.0,
            to_name: to.1.into(),
            no_replace: false,
            time: Timestamp(3),
        },
    )
}

#[test]
fn put_creates_parents_and_replaces_in_place() {
    let mut view = NamespaceView::new(0);
    let first = put(&mut view, "bucket/a/b/c.txt", 10).unwrap();
    let again = put(&mut view, "bucket/a/b/c.txt", 20).unwrap();
    assert_eq!(
        first, again,
        "replacing keeps the inode, so handles stay valid"
    );
    assert_eq!(view.attributes(first).unwrap().size, 20);
    let path: Vec<String> = ["bucket", "a", "b"].map(String::from).to_vec();
    assert_eq!(
        view.attributes(view.resolve(&path).unwrap()).unwrap().kind,
        FileKind::Directory
    );
    assert_eq!(
        put(&mut view, "bucket/a/b/c.txt/d", 1),
        Err(ErrorKind::NotADirectory)
    );
    assert_eq!(put(&mut view, "bucket/a", 1), Err(ErrorKind::IsADirectory));
}

#[test]
fn posix_rules_for_remove_and_rename() {
    let mut view = NamespaceView::new(0);
    let dir = mkdir(&mut view, InodeId::ROOT, "d").unwrap();
    let sub = mkdir(&mut view, dir, "sub").unwrap();
    create(&mut view, sub, "f").unwrap();
    assert_eq!(view.attributes(dir).unwrap().nlink, 3);
    assert_eq!(mkdir(&mut view, dir, "sub"), Err(ErrorKind::AlreadyExists));
    assert_eq!(
        create(&mut view, dir, "sub"),
        Err(ErrorKind::AlreadyExists),
        "a file cannot shadow a directory"
    );
    assert_eq!(
        apply(
            &mut view,
            Delta::Rmdir {
                parent: dir,
                name: "sub".into(),
                time: Timestamp(4)
            }
        ),
        Err(ErrorKind::NotEmpty)
    );
    assert_eq!(
        apply(
            &mut view,
            Delta::Unlink {
                parent: dir,
                name: "sub".into(),
                time: Timestamp(4)
            }
        ),
        Err(ErrorKind::IsADirectory)
    );
    assert_eq!(
        rename(&mut view, (InodeId::ROOT, "d"), (sub, "loop")),
        Err(ErrorKind::InvalidArgument)
    );

    // Replacing rename of a file over a file is atomic and frees the old target.
    let a = create(&mut view, dir, "a").unwrap();
    let b = create(&mut view, dir, "b").unwrap();
    rename(&mut view, (dir, "a"), (dir, "b")).unwrap();
    assert_eq!(view.lookup(dir, "b").unwrap(), a);
    assert_eq!(view.attributes(b).unwrap_err().kind, ErrorKind::NotFound);
    assert_eq!(view.lookup(dir, "a").unwrap_err().kind, ErrorKind::NotFound);

    // A directory moves with its subtree; link counts follow.
    let other = mkdir(&mut view, InodeId::ROOT, "other").unwrap();
    rename(&mut view, (dir, "sub"), (other, "moved")).unwrap();
    assert_eq!(view.attributes(dir).unwrap().nlink, 2);
    assert_eq!(view.attributes(other).unwrap().nlink, 3);
    assert_eq!(view.lookup(other, "moved").unwrap(), sub);
    assert_eq!(view.lookup(sub, "..").unwrap(), other);
    assert_eq!(
        rename(&mut view, (other, "moved"), (dir, "b")),
        Err(ErrorKind::NotADirectory)
    );
}

#[test]
fn hard_links_keep_the_node_until_the_last_name_goes() {
    let mut view = NamespaceView::new(0);
    let file = create(&mut view, InodeId::ROOT, "f").unwrap();
    apply(
        &mut view,
        Delta::Link {
            inode: file,
            new_parent: InodeId::ROOT,
            new_name: "g".into(),
            time: Timestamp(5),
        },
    )
    .unwrap();
    assert_eq!(view.attributes(file).unwrap().nlink, 2);
    apply(
        &mut view,
        Delta::Unlink {
            parent: InodeId::ROOT,
            name: "f".into(),
            time: Timestamp(6),
        },
    )
    .unwrap();
    assert_eq!(view.lookup(InodeId::ROOT, "g").unwrap(), file);
    apply(
        &mut view,
        Delta::Unlink {
            parent: InodeId::ROOT,
            name: "g".into(),
            time: Timestamp(7),
        },
    )
    .unwrap();
    assert_eq!(view.attributes(file).unwrap_err().kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn carried_frames_are_kept_when_their_write_applies_and_synced_before_a_snapshot() {
    use std::sync::Arc;

    use kiseki_chunk::{ChunkStore, DeviceClass, FsChunkStore, PoolName};
    use kiseki_log::CarriedFrame;
    use kiseki_types::TenantId;

    let dir = tempfile::tempdir().unwrap();
    let pool = PoolName("default".into());
    let store = Arc::new(
        FsChunkStore::open([(pool.clone(), dir.path().to_owned(), DeviceClass::FastNvme)]).unwrap(),
    );
    let tenant = TenantId(1);
    let mut view = NamespaceView::new(0).keeping_carried_frames(tenant, Arc::clone(&store) as _);
    let file = create(&mut view, InodeId::ROOT, "small").unwrap();
    let carried = |chunk: u8, inode: InodeId| Delta::Carried {
        frames: vec![CarriedFrame {
            chunk: ChunkId([chunk; 32]),
            pool: pool.0.clone(),
            frame: vec![chunk; 100],
        }],
        delta: Box::new(Delta::Write {
            inode,
            extents: vec![Extent {
                file_offset: 0,
                len: 100,
                chunk: ChunkId([chunk; 32]),
                chunk_offset: 0,
            }],
            time: Timestamp(2),
        }),
    };

    apply(&mut view, carried(7, file)).unwrap();
    assert_eq!(view.attributes(file).unwrap().size, 100);
    let kept = ChunkId([7; 32]);
    assert_eq!(store.get(tenant, kept).await.unwrap().as_ref(), &[7; 100]);
    assert!(
        !store.contains(tenant, kept).await.unwrap(),
        "unsynced: not yet a chunk to deduplicate against"
    );

    // A write that does not apply keeps nothing; wrappers do not nest.
    assert_eq!(
        apply(&mut view, carried(8, InodeId(999))),
        Err(ErrorKind::NotFound)
    );
    assert!(store.get(tenant, ChunkId([8; 32])).await.is_err());
    let nested = Delta::Carried {
        frames: Vec::new(),
        delta: Box::new(carried(9, file)),
    };
    assert_eq!(apply(&mut view, nested), Err(ErrorKind::InvalidArgument));

    // Before a snapshot lets the log drop the entry, the kept frame is synced; a restored
    // view still keeps frames.
    view.make_durable().unwrap();
    assert!(store.contains(tenant, kept).await.unwrap());
    let image = view.encode_snapshot();
    view.restore_snapshot(&image).unwrap();
    let other = create(&mut view, InodeId::ROOT, "other").unwrap();
    apply(&mut view, carried(10, other)).unwrap();
    assert!(store.get(tenant, ChunkId([10; 32])).await.is_ok());

    // A frame that cannot be kept (here: a pool this store lacks) refuses every snapshot, so
    // the log keeps the entry that holds it.
    let lost = Delta::Carried {
        frames: vec![CarriedFrame {
            chunk: ChunkId([11; 32]),
            pool: "elsewhere".into(),
            frame: vec![11; 100],
        }],
        delta: Box::new(Delta::Write {
            inode: other,
            extents: Vec::new(),
            time: Timestamp(3),
        }),
    };
    apply(&mut view, lost).unwrap();
    let refused = view.make_durable().unwrap_err();
    assert!(refused.contains("not kept yet"), "{refused}");
    assert!(
        view.make_durable().is_err(),
        "still refused on the next snapshot"
    );
}

#[test]
fn snapshot_restores_an_identical_view() {
    let mut view = NamespaceView::new(0);
    put(&mut view, "b/x/1", 5).unwrap();
    put(&mut view, "b/y", 6).unwrap();
    let bytes = view.encode_snapshot();
    let mut restored = NamespaceView::new(0);
    restored.restore_snapshot(&bytes).unwrap();
    assert_eq!(restored.encode_snapshot(), bytes);
    assert!(restored
        .restore_snapshot(&bytes[..bytes.len() / 2])
        .is_err());
}

/// The reference: every key in a sorted set, filtered the way S3 documents ListObjectsV2.
fn model_list(
    keys: &BTreeSet<String>,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<&str>,
    max: usize,
) -> (Vec<String>, bool) {
    let mut out: Vec<String> = Vec::new();
    for key in keys.range::<str, _>((std::ops::Bound::Unbounded, std::ops::Bound::Unbounded)) {
        if !key.starts_with(prefix) || after.is_some_and(|after| key.as_str() <= after) {
            continue;
        }
        let item = match delimiter.and_then(|d| key[prefix.len()..].find(d).map(|at| (d, at))) {
            Some((d, at)) => key[..prefix.len() + at + d.len()].to_owned(),
            None => key.clone(),
        };
        if out.last() == Some(&item) || after.is_some_and(|after| item.as_str() <= after) {
            continue;
        }
        if out.len() == max {
            return (out, true);
        }
        out.push(item);
    }
    (out, false)
}

fn key_strategy() -> impl Strategy<Value = String> {
    let component = prop::sample::select(vec![
        "a", "a-b", "a.b", "ab", "b", "b0", "c d", "é", "a+b", "%",
    ]);
    prop::collection::vec(component, 1..4).prop_map(|parts| parts.join("/"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

    /// Listing the tree gives exactly what S3 would give for the same set of keys, page by page.
    #[test]
    fn listing_matches_the_s3_model(
        keys in prop::collection::vec(key_strategy(), 1..40),
        prefix in prop::sample::select(vec!["", "a", "a/", "a/a", "a-", "b/", "é", "c d/"]),
        delimiter in prop::sample::select(vec![None, Some("/"), Some("b"), Some("/a")]),
        page in 1usize..6,
    ) {
        let mut view = NamespaceView::new(0);
        let mut stored = BTreeSet::new();
        for key in &keys {
            if put(&mut view, key, 1).is_ok() {
                stored.insert(key.clone());
            }
        }
        let mut after: Option<String> = None;
        for _ in 0..100 {
            let request = ListRequest { prefix, delimiter, start_after: after.as_deref(), max_entries: page };
            let listed = view.list(request).unwrap();
            let got: Vec<String> = listed.entries.iter().map(|entry| entry.key().to_owned()).collect();
            let (expected, truncated) = model_list(&stored, prefix, delimiter, after.as_deref(), page);
            prop_assert_eq!(&got, &expected, "after {:?}", after);
            prop_assert_eq!(listed.truncated, truncated);
            for entry in &listed.entries {
                if let ListEntry::Object { key, .. } = entry {
                    prop_assert!(stored.contains(key));
                }
            }
            if !truncated {
                break;
            }
            after = got.last().cloned();
        }
    }
}
