//! The C ABI's size-tagged structs as a C caller fills them (for the tests that call the
//! C ABI from Rust).
#![allow(dead_code)]

/// A size-tagged C struct filled by its `varad_*_init` call, as a C caller does it.
fn c_init<T>(init: unsafe extern "C" fn(*mut T, usize) -> varad::ffi::VaradStatus) -> T {
    let mut value = std::mem::MaybeUninit::<T>::uninit();
    // SAFETY: `value` is writable for size_of::<T>() bytes, which init fills in full.
    unsafe {
        assert_eq!(
            init(value.as_mut_ptr(), std::mem::size_of::<T>()),
            varad::ffi::VaradStatus::VARAD_OK
        );
        value.assume_init()
    }
}

/// `VaradParams` with every default, from `varad_params_init`.
pub fn params() -> varad::ffi::VaradParams {
    c_init(varad::ffi::varad_params_init)
}

/// `VaradLoadParams` with every default, from `varad_load_params_init`.
pub fn load_params() -> varad::ffi::VaradLoadParams {
    c_init(varad::ffi::varad_load_params_init)
}

/// `VaradScoreParams` with every default, from `varad_score_params_init`.
pub fn score_params() -> varad::ffi::VaradScoreParams {
    c_init(varad::ffi::varad_score_params_init)
}
