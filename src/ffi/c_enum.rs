//! C enums arrive as plain `uint32_t` (a C caller may pass any value, and a Rust enum
//! holding an unknown discriminant is undefined behaviour), so struct fields and
//! arguments keep the integer and every value is converted here, once, by the enum's
//! `TryFrom<u32>`. An unknown value is `VARAD_ERR_INVALID_ARGUMENT` naming the field,
//! the value and the valid ones.

use super::boundary::FfiError;
use super::status::VaradStatus;

/// A value that is not one of a C enum's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownValue {
    /// The value passed.
    pub value: u32,
    /// The enum's valid values, as `"0 = NAME, 1 = NAME"`.
    pub valid: String,
}

/// Implements `TryFrom<u32>` for a `#[repr(u32)]` enum of the C ABI from its variant
/// list, so the valid values are written once.
macro_rules! c_enum_try_from {
    ($name:ident { $($variant:ident),+ $(,)? }) => {
        impl TryFrom<u32> for $name {
            type Error = $crate::ffi::c_enum::UnknownValue;

            fn try_from(value: u32) -> Result<Self, Self::Error> {
                const ALL: &[$name] = &[$($name::$variant),+];
                const NAMES: &[&str] = &[$(stringify!($variant)),+];
                if let Some(&found) = ALL.iter().find(|&&v| v as u32 == value) {
                    return Ok(found);
                }
                let valid = ALL
                    .iter()
                    .zip(NAMES)
                    .map(|(&v, name)| format!("{} = {name}", v as u32))
                    .collect::<Vec<_>>()
                    .join(", ");
                Err($crate::ffi::c_enum::UnknownValue { value, valid })
            }
        }
    };
}
pub(crate) use c_enum_try_from;

/// Converts the C value of `field` to its enum, or says which field held what.
pub(crate) fn enum_arg<E>(value: u32, field: &str) -> Result<E, FfiError>
where
    E: TryFrom<u32, Error = UnknownValue>,
{
    E::try_from(value).map_err(|e| {
        FfiError::new(
            VaradStatus::VARAD_ERR_INVALID_ARGUMENT,
            format!("{field} is {}, not a valid value ({})", e.value, e.valid),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[repr(u32)]
    #[allow(non_camel_case_types)]
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Colour {
        COLOUR_RED = 1,
        COLOUR_BLUE = 7,
    }
    c_enum_try_from!(Colour {
        COLOUR_RED,
        COLOUR_BLUE
    });

    #[test]
    fn known_values_convert_and_unknown_ones_name_the_field_and_the_valid_values() {
        assert_eq!(Colour::try_from(1), Ok(Colour::COLOUR_RED));
        assert_eq!(Colour::try_from(7), Ok(Colour::COLOUR_BLUE));
        for bad in [0, 2, 6, 8, u32::MAX] {
            let e = enum_arg::<Colour>(bad, "params.colour").unwrap_err();
            assert_eq!(e.status, VaradStatus::VARAD_ERR_INVALID_ARGUMENT);
            assert_eq!(
                e.message,
                format!(
                    "params.colour is {bad}, not a valid value (1 = COLOUR_RED, 7 = COLOUR_BLUE)"
                )
            );
        }
    }
}
