//! Directory positions named by inode: protocols whose listing cookies are 64-bit numbers
//! (NFSv3 READDIR, FUSE readdir offsets) name an entry by its inode and resume after it. The
//! namespace's own cursor is the entry's child key; this finds the key of an entry by inode.

use kiseki_types::{InodeId, NamespaceError};

use crate::TenantNamespace;

/// Entries examined per step while searching a directory for an inode.
const SEARCH_PAGE_ENTRIES: usize = 4096;

impl TenantNamespace {
    /// The cursor (child key) of the entry of directory `dir` that names `inode`, if one does.
    /// Costs one pass over the directory: callers remember the cursors they hand out and come
    /// here only for ones they forgot (after a restart, or past their cache).
    pub fn cursor_of(
        &self,
        dir: InodeId,
        inode: InodeId,
    ) -> Result<Option<String>, NamespaceError> {
        let mut after: Option<String> = None;
        loop {
            let page = self.read_directory(dir, after.as_deref(), SEARCH_PAGE_ENTRIES)?;
            if let Some(entry) = page.iter().find(|entry| entry.inode == inode) {
                return Ok(Some(entry.cursor.clone()));
            }
            match page.last() {
                Some(last) if page.len() == SEARCH_PAGE_ENTRIES => {
                    after = Some(last.cursor.clone())
                }
                _ => return Ok(None),
            }
        }
    }
}
