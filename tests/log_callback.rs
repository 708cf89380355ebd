//! `varad_set_log_callback`: the library's messages reach the host's callback at the
//! levels it asked for, and nowhere once it is unset. (A test binary of its own: the
//! callback's logger is the process's one logger.)

#[path = "common/c_structs.rs"]
mod c_structs;

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::Path;
use std::ptr;
use std::sync::Mutex;

use varad::ffi::*;
use VaradStatus::*;

/// What the callback received: level and message.
type Received = Mutex<Vec<(u32, String)>>;

unsafe extern "C" fn collect(level: u32, message: *const c_char, user_data: *mut c_void) {
    // SAFETY: user_data is the test's `Received`; the message is valid during the call.
    let (received, text) = unsafe {
        (
            &*(user_data as *const Received),
            CStr::from_ptr(message).to_string_lossy().into_owned(),
        )
    };
    received.lock().unwrap().push((level, text));
}

/// Loads the format-1 model file of the fuzz corpus (written by varad 1.0, without
/// checksums) on the tiny test backbone: it loads, and warns.
fn load_format1() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let file = root.join("fuzz/corpus/model_file/seed-tiny-format1.safetensors");
    let file = CString::new(file.to_str().unwrap()).unwrap();
    let backbone = CString::new(
        root.join("tests/data/tiny_vit.onnx")
            .to_str()
            .unwrap()
            .to_string(),
    )
    .unwrap();
    let mut params = c_structs::load_params();
    params.backbone_path = backbone.as_ptr();
    params.device = VaradDevice::VARAD_DEVICE_CPU as u32;
    let mut model = ptr::null_mut();
    // SAFETY: valid strings, params and out-pointer; the model is destroyed once.
    unsafe {
        let status = varad_load(file.as_ptr(), &params, &mut model);
        if status != VARAD_OK {
            let message = CStr::from_ptr(varad_last_error_message()).to_string_lossy();
            panic!("varad_load: {status:?}: {message}");
        }
        varad_destroy(model);
    }
}

#[test]
fn the_callback_gets_the_library_messages_at_its_levels() {
    static RECEIVED: Received = Mutex::new(Vec::new());
    let user_data = &RECEIVED as *const Received as *mut c_void;
    let warnings = || {
        RECEIVED
            .lock()
            .unwrap()
            .iter()
            .filter(|(level, text)| {
                *level == VaradLogLevel::VARAD_LOG_WARN as u32 && text.contains("no checksums")
            })
            .count()
    };
    // SAFETY: `collect` is a thread-safe callback as VaradLogCallback describes.
    unsafe {
        assert_eq!(
            varad_set_log_callback(Some(collect), user_data, 9),
            VARAD_ERR_INVALID_ARGUMENT
        );
        assert_eq!(
            varad_set_log_callback(
                Some(collect),
                user_data,
                VaradLogLevel::VARAD_LOG_WARN as u32
            ),
            VARAD_OK
        );
    }
    load_format1();
    assert_eq!(warnings(), 1, "{:?}", RECEIVED.lock().unwrap());
    assert!(
        RECEIVED
            .lock()
            .unwrap()
            .iter()
            .all(|(level, _)| *level <= VaradLogLevel::VARAD_LOG_WARN as u32),
        "a message above the asked level: {:?}",
        RECEIVED.lock().unwrap()
    );
    // Errors only: the warning is not sent.
    // SAFETY: as above.
    unsafe {
        assert_eq!(
            varad_set_log_callback(
                Some(collect),
                user_data,
                VaradLogLevel::VARAD_LOG_ERROR as u32
            ),
            VARAD_OK
        );
    }
    load_format1();
    assert_eq!(warnings(), 1);
    // Unset: nothing is sent.
    // SAFETY: NULL unsets.
    unsafe {
        assert_eq!(
            varad_set_log_callback(None, ptr::null_mut(), VaradLogLevel::VARAD_LOG_DEBUG as u32),
            VARAD_OK
        );
    }
    load_format1();
    assert_eq!(warnings(), 1);
    // Set again, it is sent again.
    // SAFETY: as above.
    unsafe {
        assert_eq!(
            varad_set_log_callback(
                Some(collect),
                user_data,
                VaradLogLevel::VARAD_LOG_DEBUG as u32
            ),
            VARAD_OK
        );
    }
    load_format1();
    assert_eq!(warnings(), 2);
}
