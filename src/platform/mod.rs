//! What differs between operating systems, one concern per function and one
//! implementation per platform (`unix.rs`, `windows.rs`), so the engine above never sees a
//! `cfg`: replacing a file atomically, whether a process still exists, the folder of this
//! library's own file, a scratch file that disappears with its handle, positional file
//! I/O and the number of physical cores.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as imp;

#[cfg(windows)]
mod windows;
#[cfg(windows)]
use windows as imp;

use std::fs::File;
use std::path::{Path, PathBuf};

/// Renames `from` over `to` in one step: a reader of `to` sees the old file or the new
/// one, whole, and a reader that has the old file open keeps reading the old one. On Unix
/// `rename(2)` followed by a sync of the folder; on Windows a rename with POSIX semantics
/// (readers that share delete keep the old file), else `MoveFileExW` with
/// `MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH`, retried for a moment while
/// another program (a virus scanner, an indexer) briefly holds `to` without sharing it.
pub fn replace_file(from: &Path, to: &Path) -> std::io::Result<()> {
    imp::replace_file(from, to)
}

/// Whether a process with this id exists now. Errs on the side of "yes" when the system
/// will not say (another user's process).
pub fn process_exists(pid: u32) -> bool {
    imp::process_exists(pid)
}

/// The folder holding the file this code was loaded from: the folder of `libvarad.so` or
/// `varad.dll` for the shared library, of the program for a static link. None when the
/// system cannot say.
pub fn own_module_dir() -> Option<PathBuf> {
    imp::own_module_path().and_then(|p| p.parent().map(Path::to_path_buf))
}

/// The system's folders searched for a shared library by file name, in order, all
/// absolute. Empty on Windows, where a library found by name could be an old copy in
/// System32 rather than the one the application ships: there, only absolute paths that
/// the caller or the application's own folder gives are used.
pub fn system_library_dirs() -> Vec<PathBuf> {
    imp::system_library_dirs()
}

/// Creates a new, empty file for reading and writing whose name is gone from the folder
/// (or goes when the handle closes): its space returns to the system when the handle is
/// dropped or the process ends, however it ends.
pub fn anonymous_scratch_file(dir: &Path, stem: &str) -> std::io::Result<File> {
    let path = dir.join(format!(
        "{stem}-{}-{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    imp::anonymous_scratch_file(&path)
}

/// Writes all of `bytes` at byte `offset` of `file`, without moving a cursor other
/// threads rely on.
pub fn write_all_at(file: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    imp::write_all_at(file, bytes, offset)
}

/// Fills `bytes` from byte `offset` of `file`; an end of file before that is an error.
pub fn read_exact_at(file: &File, bytes: &mut [u8], offset: u64) -> std::io::Result<()> {
    imp::read_exact_at(file, bytes, offset)
}

/// The number of physical cores this process may use: hyper-threads counted once, capped
/// by the logical CPUs available to the process. Compute-bound kernels gain nothing from
/// hyper-threads, so this is the default thread count.
pub fn physical_cores() -> usize {
    let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
    imp::physical_cores()
        .map_or(logical, |p| p.min(logical))
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("varad-platform-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn replace_file_overwrites_and_removes_the_source() {
        let dir = scratch_dir("replace");
        let (from, to) = (dir.join("new.tmp"), dir.join("model.varad"));
        std::fs::write(&to, b"old").unwrap();
        std::fs::write(&from, b"new contents").unwrap();
        replace_file(&from, &to).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"new contents");
        assert!(!from.exists());
        // A missing source is an error, and the target is left as it was.
        assert!(replace_file(&from, &to).is_err());
        assert_eq!(std::fs::read(&to).unwrap(), b"new contents");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn replace_file_while_a_reader_holds_the_target_open() {
        let dir = scratch_dir("replace-open");
        let held_open_replaceable = imp::replaces_files_held_open(&dir);
        let (from, to) = (dir.join("new.tmp"), dir.join("model.varad"));
        std::fs::write(&to, b"old").unwrap();
        let mut reader = File::open(&to).unwrap();
        std::fs::write(&from, b"new").unwrap();
        let replaced = replace_file(&from, &to);
        let mut old = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut old).unwrap();
        assert_eq!(old, b"old", "the reader keeps the file it opened");
        if held_open_replaceable {
            // A new open gets the new file while the old reader is still open.
            replaced.unwrap();
            assert_eq!(std::fs::read(&to).unwrap(), b"new");
            drop(reader);
        } else {
            // Without POSIX rename semantics (Windows before 1809, FAT, Wine) the file is
            // replaced once its readers are gone, and until then left whole.
            let error = replaced.unwrap_err();
            assert_eq!(
                error.kind(),
                std::io::ErrorKind::PermissionDenied,
                "{error}"
            );
            assert_eq!(std::fs::read(&to).unwrap(), b"old");
            drop(reader);
            replace_file(&from, &to).unwrap();
            assert_eq!(std::fs::read(&to).unwrap(), b"new");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn this_process_exists_and_a_finished_one_does_not() {
        assert!(process_exists(std::process::id()));
        let child = if cfg!(windows) {
            std::process::Command::new("cmd")
                .args(["/C", "exit"])
                .spawn()
        } else {
            std::process::Command::new("true").spawn()
        };
        let mut child = child.unwrap();
        let pid = child.id();
        child.wait().unwrap();
        // Reaped and gone (a pid can be reused at once only on a busy system).
        assert!(!process_exists(pid));
    }

    #[test]
    fn own_module_dir_is_an_existing_absolute_folder() {
        let dir = own_module_dir().expect("the system names this module's file");
        assert!(dir.is_absolute(), "{}", dir.display());
        assert!(dir.is_dir(), "{}", dir.display());
    }

    #[test]
    fn scratch_file_positional_io_and_no_name_left_behind() {
        let dir = scratch_dir("scratch");
        let file = anonymous_scratch_file(&dir, "cache").unwrap();
        write_all_at(&file, b"world", 5).unwrap();
        write_all_at(&file, b"hello", 0).unwrap();
        let mut back = [0u8; 10];
        read_exact_at(&file, &mut back, 0).unwrap();
        assert_eq!(&back, b"helloworld");
        let mut past_end = [0u8; 4];
        assert!(read_exact_at(&file, &mut past_end, 8).is_err());
        drop(file);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn physical_cores_is_at_least_one_and_at_most_the_logical_count() {
        let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cores = physical_cores();
        assert!((1..=logical).contains(&cores), "{cores} of {logical}");
    }

    #[test]
    fn non_ascii_paths_round_trip() {
        let dir = scratch_dir("Prüfstand-検査");
        let file = dir.join("Teil-ä.varad");
        std::fs::write(dir.join("new.tmp"), b"x").unwrap();
        replace_file(&dir.join("new.tmp"), &file).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"x");
        let listed: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(listed, ["Teil-ä.varad"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
