//! Filing: the file being ingested (`Intake`: where it came from, its
//! staged copy, whether the original leaves the inbox) and where it goes
//! when done, today's archive folder or the rejected folder (through
//! `file`, never over an existing name). Touches the inbox file, its
//! staged copy and the archive and rejected folders.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::file::{self, Staged};
use crate::config::Loaded;
use crate::model::dates::date_text;

/// Whether the original file leaves the inbox or stays where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keep {
    Move,
    Copy,
    /// Read from where it is and filed nowhere: `rebuild` re-reading the
    /// archive.
    InPlace,
}

/// A file being ingested, taken: its path, name and staged copy.
pub(super) struct Intake<'a> {
    pub(super) cfg: &'a Loaded,
    pub(super) path: &'a Path,
    pub(super) file_name: &'a str,
    pub(super) keep: Keep,
    pub(super) copy: &'a mut Staged,
}

impl Intake<'_> {
    /// Files the file taken into today's archive folder (see
    /// [`file::file_taken`]).
    pub(super) fn archive(&mut self) -> Result<PathBuf> {
        let day = date_text(self.cfg.today());
        let dir = self.cfg.archive().join(day);
        self.file_into(&dir)
    }

    /// Files the file taken into `dir`, and says so when the inbox original
    /// changed after it was taken and therefore stays.
    pub(super) fn file_into(&mut self, dir: &Path) -> Result<PathBuf> {
        if self.keep == Keep::InPlace {
            return Ok(self.path.to_path_buf());
        }
        let (to, original) = file::file_taken(
            self.path,
            self.copy,
            dir,
            self.file_name,
            self.keep == Keep::Move,
        )?;
        if original == file::Original::Changed {
            tracing::warn!(
                file = ?self.file_name,
                "the file changed after it was taken (or a writer has it open again): the version taken was filed as {}; the file stays in the inbox and is ingested again as a new version (rows with the same keys replace the ones stored)",
                to.display()
            );
        }
        Ok(to)
    }
}
