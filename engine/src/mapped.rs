//! Image files mapped into memory: the records of an opened image are read where the
//! page cache holds them instead of being copied to the heap, about a quarter of a
//! large snapshot (docs/snapshot.md, "Mapped records"). The only `unsafe` in
//! Portcullis is here.
//!
//! # Safety
//!
//! Reading a mapped file through a `&[u8]` is sound while nothing changes the file
//! under the mapping. What Portcullis relies on for that:
//!
//! - it never changes an image file in place: [`crate::image::write`] writes a new
//!   image to a temporary file and renames it over the old one, and a mapping keeps the
//!   old file's contents (its inode) for as long as the mapping lives;
//! - a kept mapping lives for the rest of the process ([`Mapping::keep`]), so a
//!   `&'static [u8]` into it never dangles;
//! - the file is mapped read-only and shared, so dropping its resident pages
//!   ([`release_resident`]) only makes the next read fetch the same bytes from the page
//!   cache again.
//!
//! What it cannot rule out: another program writing to or truncating an image in place
//! while a process maps it (a truncation turns a read of the lost pages into SIGBUS).
//! The image is the service account's, mode 0600, beside the store; the operator docs
//! say to replace or delete an image, never to edit it.
#![allow(unsafe_code)]

use std::fs::File;
use std::sync::{Mutex, PoisonError};

/// A kept mapping, and how much of its front [`release_resident`] drops.
struct Kept {
    mapping: &'static memmap2::Mmap,
    released: usize,
}

/// Every kept mapping, for [`release_resident`].
static KEPT: Mutex<Vec<Kept>> = Mutex::new(Vec::new());

/// A read-only mapping of a whole file, unmapped when dropped unless kept.
pub(crate) struct Mapping(memmap2::Mmap);

impl Mapping {
    /// Maps `file` (see the module's safety argument), and asks the kernel to read it
    /// ahead: an open reads every byte, front to back, and a file not in the page
    /// cache would otherwise come in a fault's readahead at a time.
    pub(crate) fn of(file: &File) -> std::io::Result<Mapping> {
        // SAFETY: image files are never changed in place (module docs).
        let mapping = unsafe { memmap2::Mmap::map(file) }?;
        #[cfg(unix)]
        if let Err(error) = mapping.advise(memmap2::Advice::WillNeed) {
            tracing::debug!(%error, "the kernel will not read an image ahead");
        }
        Ok(Mapping(mapping))
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Keeps the mapping for the rest of the process, so that records of any snapshot
    /// can borrow from it. Its address space stays taken and, once the image is
    /// replaced or deleted, so does the old file's disk space, until the process exits:
    /// one image's worth per open (a server opens once).
    pub(crate) fn keep(self) -> &'static [u8] {
        let kept: &'static memmap2::Mmap = Box::leak(Box::new(self.0));
        KEPT.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Kept {
                mapping: kept,
                released: kept.len(),
            });
        kept
    }
}

/// Keeps the pages of a kept mapping from `tail` on resident through
/// [`release_resident`]: the tables an image holds are read by every lookup, so
/// dropping them would only make lookups fault them back in.
pub(crate) fn keep_resident(tail: &'static [u8]) {
    let start = tail.as_ptr() as usize;
    let mut kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(kept) = kept.iter_mut().find(|kept| {
        let base = kept.mapping.as_ptr() as usize;
        (base..base + kept.mapping.len()).contains(&start)
    }) {
        // Whole pages only: the page the tail starts in stays too.
        kept.released = (start - kept.mapping.as_ptr() as usize) & !4095;
    }
}

/// Drops the resident pages of every kept mapping from this process: they stay in the
/// page cache (while the kernel keeps them there) and are read back when next
/// touched. For after an open or an image write, which read every page of a mapping
/// once and would otherwise leave the whole image counted in the process's memory.
pub(crate) fn release_resident() {
    #[cfg(unix)]
    for kept in KEPT.lock().unwrap_or_else(PoisonError::into_inner).iter() {
        if kept.released == 0 {
            continue;
        }
        // SAFETY: a shared read-only file mapping whose file does not change (module
        // docs): a dropped page reads back as the same bytes, so no borrow of it sees a
        // change.
        let released = unsafe {
            kept.mapping.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                0,
                kept.released,
            )
        };
        if let Err(error) = released {
            tracing::debug!(%error, "the kernel kept an image's pages resident");
        }
    }
}
