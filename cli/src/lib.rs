//! What the `varad` command-line tool adds to the library: the evaluation harness (data
//! set layouts, metrics, a PatchCore-style baseline, reports and montages). It lives
//! outside the library, so the `libvarad` that inspection software links carries none
//! of it.

pub mod eval;
