//! The VarAD model: a tokenizer, the chosen backbone levels, and per level an adapter, a
//! BOS vector and a Mamba predictor; from images to the raw anomaly map on the finest
//! token grid, `A = sum_h up(A_h)`.

use std::sync::{Arc, Mutex};

use crate::backbone::{Backbone, BackboneOptions, Tokenizer};
use crate::config::Config;
use crate::cuda::{CudaDevice, CudaPredictor};
use crate::image::{ImageLimits, ImageView, InputGeometry, InputSpec};
use crate::predictor::{PredictorConfig, WorkspacePool};
use crate::score::Calibration;
use crate::Device;
use crate::{Error, ErrorKind, Result};

use super::combine::add_resized;
use super::level::{squared_norms, LevelParams};
use super::neighbours::NeighbourTerm;
use super::normal_stats::{MapNorm, NormalStats};
use super::scan::{DirectionMean, Scans};

/// How one image's map is composed from the levels: the map normalisation and the
/// nearest-neighbour term (the configuration's `score` settings, or a variant of them to
/// compare on one trained model).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MapSettings {
    /// How each level's residuals become its map.
    pub map_norm: MapNorm,
    /// Weight of the nearest-neighbour term (not added to `MapNorm::None`).
    pub neighbour_weight: f32,
    /// How a position's distance to a bank becomes the term.
    pub neighbour_term: NeighbourTerm,
    /// Cells the term's search probes in each bank's index; 0 = exact search.
    pub neighbour_probes: usize,
}

impl MapSettings {
    /// The settings `config` scores with.
    pub fn configured(config: &Config) -> MapSettings {
        MapSettings {
            map_norm: config.score.map_norm,
            neighbour_weight: config.score.neighbour_weight,
            neighbour_term: config.score.neighbour_term,
            neighbour_probes: config.score.neighbour_probes,
        }
    }
}

/// The trained parameters of every level, immutable once built: scoring threads share
/// them through an `Arc`; training builds a new set and swaps it in.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    /// One entry per used level, finest first.
    pub levels: Vec<LevelParams>,
}

/// One level the model uses: which backbone output, its grid and its scans.
#[derive(Debug, Clone)]
pub struct LevelLayout {
    /// Index of the backbone output.
    pub output: usize,
    /// The output's name.
    pub name: String,
    /// Channels `C_h`.
    pub channels: usize,
    /// Token grid `(height, width)`.
    pub grid: (usize, usize),
    /// The scans of that grid, with the configuration's directions active.
    pub scans: Scans,
}

impl LevelLayout {
    /// Values of this level's map per image, `C_h x h x w`.
    pub fn values(&self) -> usize {
        self.channels * self.grid.0 * self.grid.1
    }
}

/// Where the predictors run: the device [`Config::device`] resolved to, and why the CPU
/// was taken when `Auto` found no usable GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PredictorDevice {
    /// [`Device::Cpu`] or [`Device::Cuda`].
    pub active: Device,
    /// Under [`Device::Auto`], why CUDA is not used (also logged).
    pub fallback_reason: Option<String>,
}

/// Weights and the GPU copies of their predictors.
type GpuCopies = (Arc<Weights>, Arc<Vec<CudaPredictor>>);

/// GPU copies of the predictors, for a model whose device resolved to CUDA.
struct Gpu {
    device: Arc<CudaDevice>,
    // The weights the copies were made from, with the copies. Holding the `Arc` keeps
    // those weights alive, so matching them by address can never hit a freed-and-reused
    // address after `set_weights`.
    cache: Mutex<Option<GpuCopies>>,
}

/// A VarAD model: configuration, tokenizer and weights.
///
/// A model is a value: cloning it is cheap (the backbone session, worker threads, GPU
/// copies and scratch buffers are shared between clones; the weights, statistics and
/// calibration are immutable and shared until a clone replaces them). Training a clone
/// leaves the original untouched, which is how [`super::LiveModel`] trains off to the side
/// while other threads keep scoring the original.
///
/// Memory: besides its weights, a model holds little of its own. Models of the same
/// backbone file, device and thread count share its ONNX Runtime sessions (a process-wide
/// registry, freed with the last model that uses them), and the predictor's scratch
/// buffers of CPU scoring come from one process-wide pool that keeps at most one free set
/// per physical core, so a stream of images needs no new memory and idle models hold none.
#[derive(Clone)]
pub struct Model {
    pub(super) config: Config,
    tokenizer: Arc<Tokenizer>,
    layout: Arc<[LevelLayout]>,
    pub(super) weights: Arc<Weights>,
    pub(super) calibration: Option<Calibration>,
    normal_stats: Option<Arc<NormalStats>>,
    pool: Arc<rayon::ThreadPool>,
    gpu: Option<Arc<Gpu>>,
    predictor_device: PredictorDevice,
    /// The predictor's scratch buffers of recent CPU forwards (the process's shared pool:
    /// any set serves any level of any model), reused so that scoring a stream of images
    /// needs no new memory.
    workspaces: WorkspacePool<f32>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.config)
            .field(
                "levels",
                &self
                    .layout
                    .iter()
                    .map(|l| (&l.name, l.channels, l.grid))
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Model {
    /// An untrained model (adapters at zero, predictors initialised from `config.seed`):
    /// opens the backbone and checks the configuration against it.
    pub fn new(mut config: Config) -> Result<Model> {
        // Directions are a set: stored ascending, so equal sets are equal configurations.
        config.directions.sort_unstable();
        config.validate()?;
        let threads = if config.threads == 0 {
            crate::platform::physical_cores()
        } else {
            config.threads
        };
        let backbone = Backbone::open(
            &config.backbone,
            &BackboneOptions {
                runtime_path: config.runtime_path.clone(),
                device: config.device,
                intra_threads: Some(threads),
            },
        )?;
        let spec = backbone.spec().clone();
        let (width, height) = config
            .input_size
            .unwrap_or((spec.input_size.0 as u32, spec.input_size.1 as u32));
        let mut input = InputSpec::new(width, height).with_mode(config.resize_mode);
        input.limits = ImageLimits {
            max_pixels: config.max_image_pixels,
        };
        let tokenizer = Tokenizer::new(backbone, input)?;
        let names = if config.levels.is_empty() {
            &spec.default_levels
        } else {
            &config.levels
        };
        let outputs: Vec<usize> = if names.is_empty() {
            (0..spec.levels.len()).collect()
        } else {
            names
                .iter()
                .map(|name| {
                    spec.levels
                        .iter()
                        .position(|l| &l.name == name)
                        .ok_or_else(|| {
                            let names: Vec<&str> =
                                spec.levels.iter().map(|l| l.name.as_str()).collect();
                            Error::config(format!(
                                "backbone `{}` has no output `{name}`; its outputs are {}",
                                spec.name,
                                names.join(", ")
                            ))
                        })
                })
                .collect::<Result<_>>()?
        };
        if outputs.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::config(
                "levels must name distinct backbone outputs, finest first",
            ));
        }
        let channels = level_channels(&tokenizer, &outputs)?;
        let grids = tokenizer.grids();
        let layout = outputs
            .iter()
            .zip(&channels)
            .map(|(&output, &channels)| {
                let grid = grids[output];
                let name = spec.levels[output].name.clone();
                let mean = if config.context_mean {
                    DirectionMean::WithContext
                } else {
                    DirectionMean::All
                };
                let scans = Scans::new(grid.0, grid.1, config.prediction_step)
                    .map_err(|e| e.context(format!("level `{name}` at input {width}x{height}")))?
                    .with_direction_mean(mean)
                    .with_directions(&config.directions)?;
                Ok(LevelLayout {
                    output,
                    name,
                    channels,
                    grid,
                    scans,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let weights = Weights {
            levels: layout
                .iter()
                .enumerate()
                .map(|(h, l)| {
                    LevelParams::init(
                        predictor_config(&config, l.channels),
                        level_seed(config.seed, h),
                    )
                })
                .collect::<Result<_>>()?,
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("varad-{i}"))
            .build()
            .map_err(|e| {
                Error::new(
                    crate::ErrorKind::Internal,
                    format!("cannot start worker threads: {e}"),
                )
            })?;
        let weights = Arc::new(weights);
        let (gpu, predictor_device) = predictors_on_device(config.device, &weights)?;
        // Until training records real ones: an untrained model scores (meaninglessly, as
        // it always did) under every normalisation.
        let normal_stats =
            NormalStats::neutral(layout.iter().map(|l| (l.channels, l.grid.0 * l.grid.1)));
        Ok(Model {
            config,
            tokenizer: Arc::new(tokenizer),
            workspaces: WorkspacePool::shared(),
            layout: layout.into(),
            weights,
            calibration: None,
            normal_stats: Some(Arc::new(normal_stats)),
            pool: Arc::new(pool),
            gpu,
            predictor_device,
        })
    }

    /// Where the predictors run (scoring and training).
    pub fn predictor_device(&self) -> &PredictorDevice {
        &self.predictor_device
    }

    /// Runs the predictors, for scoring and training, on `device` from now on (its copies
    /// of the current weights are made here). For the tests that run the whole CUDA path
    /// on the CPU emulator (`cuda::emulator`); a user chooses the device in
    /// [`Config::device`].
    #[cfg(feature = "internals")]
    pub fn run_predictors_on(&mut self, device: Arc<CudaDevice>) -> Result<()> {
        let copies = upload(&device, &self.weights)?;
        self.predictor_device = PredictorDevice {
            active: Device::Cuda(device.ordinal()),
            fallback_reason: None,
        };
        self.gpu = Some(Arc::new(Gpu {
            device,
            cache: Mutex::new(Some((Arc::clone(&self.weights), Arc::new(copies)))),
        }));
        Ok(())
    }

    /// The GPU the predictors run on, if any.
    pub(crate) fn predictor_gpu(&self) -> Option<&Arc<CudaDevice>> {
        self.gpu.as_ref().map(|g| &g.device)
    }

    /// GPU copies of `weights`' predictors when the model runs them on CUDA: cached for
    /// the model's current weights, made afresh for any other (calibration candidates).
    pub(crate) fn gpu_predictors(
        &self,
        weights: &Weights,
    ) -> Result<Option<Arc<Vec<CudaPredictor>>>> {
        let Some(gpu) = &self.gpu else {
            return Ok(None);
        };
        let mut cache = gpu.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((w, p)) = cache.as_ref() {
            if std::ptr::eq(Arc::as_ptr(w), weights) {
                return Ok(Some(Arc::clone(p)));
            }
        }
        let copies = Arc::new(upload(&gpu.device, weights)?);
        if std::ptr::eq(Arc::as_ptr(&self.weights), weights) {
            *cache = Some((Arc::clone(&self.weights), Arc::clone(&copies)));
        }
        Ok(Some(copies))
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The tokenizer (backbone and input size).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The levels in use, finest first.
    pub fn layout(&self) -> &[LevelLayout] {
        &self.layout
    }

    /// The current weights.
    pub fn weights(&self) -> &Arc<Weights> {
        &self.weights
    }

    /// Replaces the weights (training commits its result here; loading a model file too).
    pub fn set_weights(&mut self, weights: Weights) -> Result<()> {
        if weights.levels.len() != self.layout.len()
            || weights
                .levels
                .iter()
                .zip(self.layout.iter())
                .any(|(w, l)| w.channels != l.channels)
        {
            return Err(Error::new(
                crate::ErrorKind::ModelFile,
                "weights do not match the model's levels",
            ));
        }
        self.weights = Arc::new(weights);
        Ok(())
    }

    /// The error statistics of normal images that training recorded (what the map
    /// normalisations other than [`MapNorm::None`] need): neutral ones for an untrained
    /// model ([`NormalStats::neutral`]), `None` for one loaded from a file written before
    /// they existed.
    pub fn normal_stats(&self) -> Option<&Arc<NormalStats>> {
        self.normal_stats.as_ref()
    }

    /// Replaces the normal-image statistics (training sets them; loading a model file too).
    pub fn set_normal_stats(&mut self, stats: NormalStats) -> Result<()> {
        if stats.levels.len() != self.layout.len() {
            return Err(Error::new(
                crate::ErrorKind::ModelFile,
                format!(
                    "normal-image statistics for {} levels; the model has {}",
                    stats.levels.len(),
                    self.layout.len()
                ),
            ));
        }
        for (s, l) in stats.levels.iter().zip(self.layout.iter()) {
            s.check(l.channels, l.grid.0 * l.grid.1)
                .map_err(|e| e.context(format!("level `{}`", l.name)))?;
        }
        for (i, bank) in stats.neighbours.iter().enumerate() {
            let channels = self.layout.get(bank.level).map_or(0, |l| l.channels);
            bank.check(self.layout.len(), channels)?;
            if i > 0 && stats.neighbours[i - 1].level >= bank.level {
                return Err(Error::new(
                    ErrorKind::ModelFile,
                    "neighbour banks: at most one per level, in level order",
                ));
            }
        }
        if self.config.score.neighbour_probes > 0 {
            // Built here rather than by the first part scored, which would wait for it.
            for bank in &stats.neighbours {
                bank.search_index();
            }
        }
        self.normal_stats = Some(Arc::new(stats));
        Ok(())
    }

    /// Drops the normal-image statistics (a model file without them is loaded so).
    pub(crate) fn clear_normal_stats(&mut self) {
        self.normal_stats = None;
    }

    /// The finest token grid `(height, width)`, where the raw map lives.
    pub fn finest_grid(&self) -> (usize, usize) {
        self.layout[0].grid
    }

    /// Values per image of the used levels' maps, all levels together.
    pub fn values_per_image(&self) -> usize {
        self.layout.iter().map(LevelLayout::values).sum()
    }

    /// Where level `h`'s map lies in one image's concatenated level maps (as
    /// [`Model::features`] gives them).
    pub fn level_range(&self, h: usize) -> std::ops::Range<usize> {
        let start: usize = self.layout[..h].iter().map(LevelLayout::values).sum();
        start..start + self.layout[h].values()
    }

    /// Runs `f` on the model's worker threads.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }

    /// Tokenizes images and returns, per image, the used levels' maps concatenated
    /// (`[C_h, h_h, w_h]` each, level order) and where the image landed.
    pub fn features(&self, images: &[ImageView]) -> Result<Vec<(Vec<f32>, InputGeometry)>> {
        let tokens = self.pool.install(|| self.tokenizer.tokenize(images))?;
        Ok(tokens
            .geometries
            .iter()
            .enumerate()
            .map(|(i, &geometry)| {
                let values = self
                    .layout
                    .iter()
                    .flat_map(|l| tokens.levels[l.output].image(i).iter().copied())
                    .collect();
                (values, geometry)
            })
            .collect())
    }

    /// The raw anomaly map on the finest grid of one image from its concatenated level
    /// maps (as [`Model::features`] gives them), with `weights` and the model's map
    /// normalisation and statistics.
    pub fn raw_map_with(&self, weights: &Weights, features: &[f32]) -> Result<Vec<f32>> {
        self.raw_map_normalised(
            weights,
            self.normal_stats.as_deref(),
            &MapSettings::configured(&self.config),
            features,
        )
    }

    /// [`Model::raw_map_with`] composed as `settings` say, over `stats`.
    pub fn raw_map_normalised(
        &self,
        weights: &Weights,
        stats: Option<&NormalStats>,
        settings: &MapSettings,
        features: &[f32],
    ) -> Result<Vec<f32>> {
        let norm = settings.map_norm;
        let stats = match (norm, stats) {
            (MapNorm::None, _) => None,
            (_, Some(s)) => Some(s),
            (_, None) => {
                return Err(Error::config(format!(
                    "map normalisation `{norm}` needs the normal-image statistics that training \
                     records, and this model has none (its file was written by a version from \
                     before they existed): retrain it, or score with map_norm `none`"
                )))
            }
        };
        let finest = self.finest_grid();
        let mut total = vec![0f32; finest.0 * finest.1];
        let mut offset = 0;
        let gpu = self.gpu_predictors(weights)?;
        for (h, (layout, params)) in self.layout.iter().zip(&weights.levels).enumerate() {
            let n = layout.values();
            let residuals = self.level_residuals(
                gpu.as_deref().map(|g| g.as_slice()),
                h,
                params,
                &features[offset..offset + n],
            )?;
            let map = match stats {
                Some(s) => s.levels[h].map(norm, &residuals, layout.channels),
                None => squared_norms(&residuals, layout.channels),
            };
            self.workspaces.give_back(residuals);
            add_resized(&map, layout.grid, &mut total, finest);
            let banks = stats.map_or(&[][..], |s| &s.neighbours[..]);
            if let Some(bank) = banks.iter().find(|b| b.level == h) {
                let weight = settings.neighbour_weight;
                if weight > 0.0 {
                    let mut term = bank.map(
                        &features[offset..offset + n],
                        layout.grid,
                        settings.neighbour_term,
                        settings.neighbour_probes,
                    );
                    term.iter_mut().for_each(|v| *v *= weight);
                    add_resized(&term, layout.grid, &mut total, finest);
                }
            }
            offset += n;
        }
        Ok(total)
    }

    /// Level `h`'s prediction residuals `[L, C]` for one image's level features, on the
    /// GPU copies `gpu` when given.
    pub(crate) fn level_residuals(
        &self,
        gpu: Option<&[CudaPredictor]>,
        h: usize,
        params: &LevelParams,
        level_features: &[f32],
    ) -> Result<Vec<f32>> {
        let scans = &self.layout[h].scans;
        match gpu {
            Some(g) => params.residuals_with(scans, level_features, 1, |x, b, l| {
                g[h].forward_in_place(x, b, l)
            }),
            None => self
                .workspaces
                .with(|ws| params.residuals(scans, level_features, 1, ws)),
        }
    }

    /// The raw anomaly maps (finest grid, before any resizing or smoothing) of a batch,
    /// with where each image landed in the input.
    pub fn raw_maps(&self, images: &[ImageView]) -> Result<Vec<(Vec<f32>, InputGeometry)>> {
        let features = self.features(images)?;
        let weights = Arc::clone(&self.weights);
        self.pool.install(|| {
            features
                .into_iter()
                .map(|(values, geometry)| Ok((self.raw_map_with(&weights, &values)?, geometry)))
                .collect()
        })
    }
}

/// Copies every level's predictor to `device`.
fn upload(device: &Arc<CudaDevice>, weights: &Weights) -> Result<Vec<CudaPredictor>> {
    weights
        .levels
        .iter()
        .map(|l| CudaPredictor::from_predictor(device, &l.predictor))
        .collect()
}

/// Resolves `device` for the predictors and, on CUDA, makes their GPU copies (so a GPU
/// that cannot take them fails here, not at the first image). Under `Auto` any CUDA
/// failure means the CPU, with the reason kept and logged; under `Cuda(i)` it is an error.
fn predictors_on_device(
    device: Device,
    weights: &Arc<Weights>,
) -> Result<(Option<Arc<Gpu>>, PredictorDevice)> {
    let resolved = crate::cuda::resolve(device)?;
    let cpu = |reason: Option<String>| PredictorDevice {
        active: Device::Cpu,
        fallback_reason: reason,
    };
    let Some(dev) = resolved.device else {
        return Ok((None, cpu(resolved.fallback_reason)));
    };
    match upload(&dev, weights) {
        Ok(copies) => Ok((
            Some(Arc::new(Gpu {
                device: dev,
                cache: Mutex::new(Some((Arc::clone(weights), Arc::new(copies)))),
            })),
            PredictorDevice {
                active: resolved.active,
                fallback_reason: None,
            },
        )),
        Err(e) if device == Device::Auto => {
            log::info!(
                "predictor: CUDA not used, running on the CPU: {}",
                e.message()
            );
            Ok((None, cpu(Some(e.message().to_string()))))
        }
        Err(e) => Err(e.context(format!("{device} was requested for the predictor"))),
    }
}

/// The predictor of a level with `channels` channels under `config`.
pub fn predictor_config(config: &Config, channels: usize) -> PredictorConfig {
    let mut p = PredictorConfig::new(channels);
    p.n_layers = config.n_layers;
    p.d_state = config.d_state;
    p.expand = config.expand;
    p.d_conv = config.d_conv;
    p
}

/// Each level's predictor gets its own stream of the seed.
fn level_seed(seed: u64, level: usize) -> u64 {
    seed ^ (0x9E37_79B9_7F4A_7C15u64.wrapping_mul(level as u64 + 1))
}

/// The channels of the used outputs: from the graph where it fixes them, else from one run
/// on the smallest valid input.
fn level_channels(tokenizer: &Tokenizer, outputs: &[usize]) -> Result<Vec<usize>> {
    let spec = tokenizer.backbone().spec();
    if let Some(known) = outputs
        .iter()
        .map(|&o| spec.levels[o].channels)
        .collect::<Option<Vec<_>>>()
    {
        return Ok(known);
    }
    let side = spec.input_multiple;
    let maps = tokenizer
        .backbone()
        .run(&vec![0.5; 3 * side * side], 1, side, side)?;
    Ok(outputs.iter().map(|&o| maps[o].channels).collect())
}
