//! The Windows implementations behind `platform`. Paths reach the system as UTF-16 (what
//! the `W` functions take); Rust's `Path` already holds them that way, so a UTF-8 path
//! from C arrives whole, whatever its script.

use std::fs::File;
use std::os::windows::ffi::{OsStrExt, OsStringExt};
use std::os::windows::fs::{FileExt, OpenOptionsExt};
use std::os::windows::io::AsRawHandle;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use windows_sys::Win32::Foundation::{
    CloseHandle, GetLastError, ERROR_ACCESS_DENIED, ERROR_HANDLE_EOF, ERROR_INSUFFICIENT_BUFFER,
    ERROR_SHARING_VIOLATION, HMODULE, STILL_ACTIVE,
};
use windows_sys::Win32::Storage::FileSystem::{
    FileRenameInfoEx, MoveFileExW, SetFileInformationByHandle, DELETE, FILE_FLAG_DELETE_ON_CLOSE,
    FILE_RENAME_INFO, FILE_SHARE_DELETE, FILE_SHARE_READ, FILE_SHARE_WRITE,
    MOVEFILE_REPLACE_EXISTING, MOVEFILE_WRITE_THROUGH, SYNCHRONIZE,
};
use windows_sys::Win32::System::LibraryLoader::{
    GetModuleFileNameW, GetModuleHandleExW, GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS,
    GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
};
use windows_sys::Win32::System::SystemInformation::{
    GetLogicalProcessorInformationEx, RelationProcessorCore,
    SYSTEM_LOGICAL_PROCESSOR_INFORMATION_EX,
};
use windows_sys::Win32::System::Threading::{
    GetExitCodeProcess, OpenProcess, PROCESS_QUERY_LIMITED_INFORMATION,
};

/// How long a replacement is retried while another program holds the target unshared.
const REPLACE_PATIENCE: Duration = Duration::from_secs(2);

fn wide(path: &Path) -> Vec<u16> {
    path.as_os_str().encode_wide().chain(Some(0)).collect()
}

/// `FILE_RENAME_FLAG_REPLACE_IF_EXISTS` and `FILE_RENAME_FLAG_POSIX_SEMANTICS` (winbase.h).
const RENAME_REPLACE_IF_EXISTS: u32 = 1;
const RENAME_POSIX_SEMANTICS: u32 = 2;

pub fn replace_file(from: &Path, to: &Path) -> std::io::Result<()> {
    // A reader that opened the old file sharing delete (as Rust, .NET's File.OpenRead
    // does not, and this library's loader do) keeps reading it while the name moves to
    // the new file: what POSIX rename semantics give (Windows 10 1809 and later, NTFS).
    // Elsewhere, or where a reader did not share delete, MoveFileExW replaces the file
    // once the readers are gone.
    if posix_rename(from, to).is_ok() {
        return Ok(());
    }
    move_file_replacing(from, to)
}

fn posix_rename(from: &Path, to: &Path) -> std::io::Result<()> {
    let source = std::fs::OpenOptions::new()
        .access_mode(DELETE | SYNCHRONIZE)
        .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE)
        .open(from)?;
    let name: Vec<u16> = std::path::absolute(to)?.as_os_str().encode_wide().collect();
    let header = std::mem::offset_of!(FILE_RENAME_INFO, FileName);
    let bytes = header + (name.len() + 1) * 2;
    // u64 storage keeps the struct's alignment.
    let mut buffer = vec![0u64; bytes.div_ceil(8)];
    let info = buffer.as_mut_ptr().cast::<FILE_RENAME_INFO>();
    // SAFETY: `buffer` holds `bytes` zeroed, aligned bytes: the header and the name with
    // its terminating NUL.
    unsafe {
        (*info).Anonymous.Flags = RENAME_REPLACE_IF_EXISTS | RENAME_POSIX_SEMANTICS;
        (*info).FileNameLength = (name.len() * 2) as u32;
        std::ptr::copy_nonoverlapping(
            name.as_ptr(),
            std::ptr::addr_of_mut!((*info).FileName).cast::<u16>(),
            name.len(),
        );
    }
    // SAFETY: the handle is open with DELETE access; `info` is `bytes` long.
    let ok = unsafe {
        SetFileInformationByHandle(
            source.as_raw_handle(),
            FileRenameInfoEx,
            info.cast(),
            bytes as u32,
        )
    };
    if ok == 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The rename is metadata of the file: flushing its handle writes it through.
    let _ = source.sync_all();
    Ok(())
}

fn move_file_replacing(from: &Path, to: &Path) -> std::io::Result<()> {
    let (from_w, to_w) = (wide(from), wide(to));
    let started = Instant::now();
    loop {
        // SAFETY: both strings are NUL-terminated UTF-16 that outlive the call.
        let ok = unsafe {
            MoveFileExW(
                from_w.as_ptr(),
                to_w.as_ptr(),
                MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH,
            )
        };
        if ok != 0 {
            return Ok(());
        }
        let error = std::io::Error::last_os_error();
        let transient = matches!(
            error.raw_os_error().map(|c| c as u32),
            Some(ERROR_ACCESS_DENIED | ERROR_SHARING_VIOLATION)
        );
        if !transient || started.elapsed() >= REPLACE_PATIENCE {
            return Err(error);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn process_exists(pid: u32) -> bool {
    // SAFETY: OpenProcess returns null or a handle that is closed below.
    let handle = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if handle.is_null() {
        // ERROR_INVALID_PARAMETER: no such process. Anything else (access denied for
        // another user's process) means it exists.
        // SAFETY: reads the calling thread's last error.
        let error = unsafe { GetLastError() };
        return error != windows_sys::Win32::Foundation::ERROR_INVALID_PARAMETER;
    }
    let mut code = 0u32;
    // SAFETY: `handle` is open; `code` is a valid out-parameter.
    let known = unsafe { GetExitCodeProcess(handle, &mut code) } != 0;
    // SAFETY: closes the handle opened above, once.
    unsafe { CloseHandle(handle) };
    // An exited process whose handle someone still holds is not running.
    !known || code == STILL_ACTIVE as u32
}

pub fn own_module_path() -> Option<PathBuf> {
    let mut module: HMODULE = std::ptr::null_mut();
    let address = own_module_path as *const u16;
    // SAFETY: FROM_ADDRESS takes any address inside a loaded module; UNCHANGED_REFCOUNT
    // leaves nothing to release.
    let ok = unsafe {
        GetModuleHandleExW(
            GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
            address,
            &mut module,
        )
    };
    if ok == 0 {
        return None;
    }
    let mut buffer = vec![0u16; 260];
    loop {
        // SAFETY: `buffer` holds `len` writable u16s.
        let len = unsafe { GetModuleFileNameW(module, buffer.as_mut_ptr(), buffer.len() as u32) }
            as usize;
        if len == 0 {
            return None;
        }
        // A full buffer means the name was cut: try again with a larger one.
        if len < buffer.len() {
            buffer.truncate(len);
            return Some(PathBuf::from(std::ffi::OsString::from_wide(&buffer)));
        }
        if buffer.len() >= 1 << 15 {
            return None;
        }
        buffer.resize(buffer.len() * 2, 0);
    }
}

pub fn system_library_dirs() -> Vec<PathBuf> {
    Vec::new()
}

pub fn anonymous_scratch_file(path: &Path) -> std::io::Result<File> {
    // Delete-on-close: the system removes the file when its last handle closes, including
    // when the process is killed. Shared for delete, as that flag requires.
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(FILE_FLAG_DELETE_ON_CLOSE)
        .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE)
        .open(path)
}

pub fn write_all_at(file: &File, mut bytes: &[u8], mut offset: u64) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match file.seek_write(bytes, offset) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                bytes = &bytes[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub fn read_exact_at(file: &File, mut bytes: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match file.seek_read(bytes, offset) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                bytes = &mut bytes[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // Reading at or past the end of a file is an error on Windows, not a 0.
            Err(e) if e.raw_os_error() == Some(ERROR_HANDLE_EOF as i32) => {
                return Err(std::io::ErrorKind::UnexpectedEof.into())
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The processor-core records of `GetLogicalProcessorInformationEx`: one per physical
/// core, whatever its hyper-threads.
pub fn physical_cores() -> Option<usize> {
    let mut len = 0u32;
    // SAFETY: a null buffer of length 0 asks for the length needed.
    let ok = unsafe {
        GetLogicalProcessorInformationEx(RelationProcessorCore, std::ptr::null_mut(), &mut len)
    };
    // SAFETY: reads the calling thread's last error.
    if ok != 0 || unsafe { GetLastError() } != ERROR_INSUFFICIENT_BUFFER || len == 0 {
        return None;
    }
    // u64 storage keeps the records' alignment.
    let mut buffer = vec![0u64; (len as usize).div_ceil(8)];
    // SAFETY: `buffer` holds at least `len` writable bytes, suitably aligned.
    let ok = unsafe {
        GetLogicalProcessorInformationEx(
            RelationProcessorCore,
            buffer
                .as_mut_ptr()
                .cast::<SYSTEM_LOGICAL_PROCESSOR_INFORMATION_EX>(),
            &mut len,
        )
    };
    if ok == 0 {
        return None;
    }
    let bytes = buffer.as_ptr().cast::<u8>();
    let (mut offset, mut cores) = (0usize, 0usize);
    while offset + std::mem::size_of::<u32>() * 2 <= len as usize {
        // SAFETY: each record starts with its relationship and its own size, within the
        // `len` bytes the call wrote.
        let record = unsafe {
            &*bytes
                .add(offset)
                .cast::<SYSTEM_LOGICAL_PROCESSOR_INFORMATION_EX>()
        };
        if record.Size == 0 {
            break;
        }
        if record.Relationship == RelationProcessorCore {
            cores += 1;
        }
        offset += record.Size as usize;
    }
    (cores > 0).then_some(cores)
}

/// Whether this system renames with POSIX semantics (Windows 10 1809 and later on NTFS;
/// not Wine 8, not FAT): probed on two scratch files in `dir`.
#[cfg(test)]
pub fn replaces_files_held_open(dir: &Path) -> bool {
    let (from, to) = (dir.join("probe-from"), dir.join("probe-to"));
    std::fs::write(&from, b"a").unwrap();
    std::fs::write(&to, b"b").unwrap();
    let supported = posix_rename(&from, &to).is_ok();
    let _ = std::fs::remove_file(&from);
    let _ = std::fs::remove_file(&to);
    supported
}
