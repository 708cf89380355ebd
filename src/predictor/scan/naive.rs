//! The scan straight from its definition, in the obvious loops: the twins the kernels are
//! tested and benchmarked against (tests and benches only).

use super::dims::{ScanDims, ScanGrads, ScanInputs};
use crate::predictor::float::Float;

#[cfg(any(test, feature = "internals"))]
/// The obvious twin of [`forward`]: every state kept, one channel at a time, libm `exp`.
pub fn forward_naive<T: Float>(s: &ScanDims, inp: &ScanInputs<T>, u: &[T], y: &mut [T]) {
    let (di, ns) = (s.d_inner, s.d_state);
    for b in 0..s.batch {
        for d in 0..di {
            let mut h = vec![0f64; ns];
            for t in 0..s.len {
                let row = b * s.len + t;
                let dl = inp.delta[row * di + d].to_f64();
                let x = u[row * di + d].to_f64();
                let xr = &inp.xdbl[row * s.ld_xdbl + s.b_offset..];
                let mut acc = inp.d[d].to_f64() * x;
                for n in 0..ns {
                    let a = -inp.a_log[d * ns + n].to_f64().exp();
                    h[n] = (dl * a).exp() * h[n] + dl * xr[n].to_f64() * x;
                    acc += xr[ns + n].to_f64() * h[n];
                }
                let z = inp.z[row * inp.ld_z + d].to_f64();
                y[row * di + d] = T::from_f64(acc * z / (1.0 + (-z).exp()));
            }
        }
    }
}

#[cfg(any(test, feature = "internals"))]
/// The obvious twin of [`backward`]: all `L x N` states of a channel stored, walked back.
/// Same outputs as [`backward`] (including `y` over `gy`), for tests.
pub fn backward_naive<T: Float>(s: &ScanDims, inp: &ScanInputs<T>, u: &[T], g: ScanGrads<T>) {
    let (di, ns, l) = (s.d_inner, s.d_state, s.len);
    for row in 0..s.rows() {
        for v in &mut g.gxdbl[row * s.ld_xdbl + s.b_offset..][..2 * ns] {
            *v = T::ZERO;
        }
    }
    for b in 0..s.batch {
        for d in 0..di {
            let a: Vec<f64> = (0..ns)
                .map(|n| -inp.a_log[d * ns + n].to_f64().exp())
                .collect();
            let dd = inp.d[d].to_f64();
            let mut hs = vec![0f64; (l + 1) * ns];
            for t in 0..l {
                let row = b * l + t;
                let dl = inp.delta[row * di + d].to_f64();
                let x = u[row * di + d].to_f64();
                let xr = &inp.xdbl[row * s.ld_xdbl + s.b_offset..];
                for n in 0..ns {
                    hs[(t + 1) * ns + n] =
                        (dl * a[n]).exp() * hs[t * ns + n] + dl * xr[n].to_f64() * x;
                }
            }
            let mut dh = vec![0f64; ns];
            let (mut g_d, mut g_a) = (0f64, vec![0f64; ns]);
            for t in (0..l).rev() {
                let row = b * l + t;
                let dl = inp.delta[row * di + d].to_f64();
                let x = u[row * di + d].to_f64();
                let xr: Vec<f64> = inp.xdbl[row * s.ld_xdbl + s.b_offset..][..2 * ns]
                    .iter()
                    .map(|v| v.to_f64())
                    .collect();
                let z = inp.z[row * inp.ld_z + d].to_f64();
                let sig = 1.0 / (1.0 + (-z).exp());
                let ys = dd * x
                    + (0..ns)
                        .map(|n| xr[ns + n] * hs[(t + 1) * ns + n])
                        .sum::<f64>();
                let gy = g.gy_then_y[row * di + d].to_f64();
                g.gy_then_y[row * di + d] = T::from_f64(ys * z * sig);
                g.gz[row * g.ld_gz + d] = T::from_f64(gy * ys * sig * (1.0 + z * (1.0 - sig)));
                let gys = gy * z * sig;
                g_d += gys * x;
                let mut gu = gys * dd;
                let mut gdl = 0.0;
                for n in 0..ns {
                    dh[n] += gys * xr[ns + n];
                    let gr = &mut g.gxdbl[row * s.ld_xdbl + s.b_offset..];
                    gr[ns + n] += T::from_f64(gys * hs[(t + 1) * ns + n]);
                    gr[n] += T::from_f64(dh[n] * dl * x);
                    let e = (dl * a[n]).exp();
                    gdl += dh[n] * (hs[t * ns + n] * e * a[n] + x * xr[n]);
                    g_a[n] += dh[n] * hs[t * ns + n] * e * dl;
                    gu += dh[n] * dl * xr[n];
                    dh[n] *= e;
                }
                g.gu[row * di + d] = T::from_f64(gu);
                // softplus' from dt = softplus(raw): sigmoid(raw) = 1 - exp(-dt).
                let gdl = gdl * if dl > 20.0 { 1.0 } else { -(-dl).exp_m1() };
                g.gdelta[row * di + d] = T::from_f64(gdl);
                g.gbias[d] += T::from_f64(gdl);
            }
            g.gd[d] += T::from_f64(g_d);
            for n in 0..ns {
                g.ga_log[d * ns + n] += T::from_f64(g_a[n] * a[n]);
            }
        }
    }
}
