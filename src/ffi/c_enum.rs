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

/// A `#[repr(u32)]` enum of the C ABI: its variants with their values and names.
pub(crate) trait CEnum: Copy + PartialEq + 'static {
    /// Every variant, its C value and its name, in declaration order.
    const ALL: &'static [(Self, u32, &'static str)];
}

/// Implements [`CEnum`] and `TryFrom<u32>` for a `#[repr(u32)]` enum of the C ABI from
/// its variant list, so the valid values are written once.
macro_rules! c_enum_try_from {
    ($name:ident { $($variant:ident),+ $(,)? }) => {
        impl $crate::ffi::c_enum::CEnum for $name {
            const ALL: &'static [(Self, u32, &'static str)] =
                &[$(($name::$variant, $name::$variant as u32, stringify!($variant))),+];
        }

        impl TryFrom<u32> for $name {
            type Error = $crate::ffi::c_enum::UnknownValue;

            fn try_from(value: u32) -> Result<Self, Self::Error> {
                $crate::ffi::c_enum::variant_where(value, |_: $name| true)
            }
        }
    };
}
pub(crate) use c_enum_try_from;

/// The variant of `E` with C value `value` among those `allowed` accepts; otherwise the
/// value and the allowed ones only (a field that takes a subset of an enum lists that
/// subset).
pub(crate) fn variant_where<E: CEnum>(
    value: u32,
    allowed: impl Fn(E) -> bool,
) -> Result<E, UnknownValue> {
    if let Some(&(found, _, _)) = E::ALL
        .iter()
        .find(|&&(v, code, _)| code == value && allowed(v))
    {
        return Ok(found);
    }
    let valid = E::ALL
        .iter()
        .filter(|&&(v, _, _)| allowed(v))
        .map(|(_, code, name)| format!("{code} = {name}"))
        .collect::<Vec<_>>()
        .join(", ");
    Err(UnknownValue { value, valid })
}

/// Converts the C value of `field` to its enum, or says which field held what.
pub(crate) fn enum_arg<E>(value: u32, field: &str) -> Result<E, FfiError>
where
    E: TryFrom<u32, Error = UnknownValue>,
{
    E::try_from(value).map_err(|e| unknown(field, e))
}

/// [`enum_arg`] for a field that takes only the variants `allowed` accepts; the error
/// lists only those.
pub(crate) fn enum_arg_where<E: CEnum>(
    value: u32,
    field: &str,
    allowed: impl Fn(E) -> bool,
) -> Result<E, FfiError> {
    variant_where(value, allowed).map_err(|e| unknown(field, e))
}

fn unknown(field: &str, e: UnknownValue) -> FfiError {
    FfiError::new(
        VaradStatus::VARAD_ERR_INVALID_ARGUMENT,
        format!("{field} is {}, not a valid value ({})", e.value, e.valid),
    )
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

    #[test]
    fn a_field_that_takes_a_subset_lists_only_that_subset() {
        let only_blue = |c: Colour| c == Colour::COLOUR_BLUE;
        assert_eq!(
            enum_arg_where::<Colour>(7, "params.colour", only_blue).unwrap(),
            Colour::COLOUR_BLUE
        );
        for bad in [1, 2] {
            let e = enum_arg_where::<Colour>(bad, "params.colour", only_blue).unwrap_err();
            assert_eq!(e.status, VaradStatus::VARAD_ERR_INVALID_ARGUMENT);
            assert_eq!(
                e.message,
                format!("params.colour is {bad}, not a valid value (7 = COLOUR_BLUE)")
            );
        }
    }
}
