//! Where `varad score --out` puts each image's results: the inputs' folders mirrored under
//! the output folder. The whole layout is worked out and checked before any image is
//! scored, so that no result can replace another result of the run, an input image, or
//! (unless the caller asks for it) an earlier run's files.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use varad::{Error, Result};

/// The run summary's file name in the output folder.
pub const SUMMARY_FILE: &str = "results.csv";

/// One image's output files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageOutputs {
    /// The grey anomaly map.
    pub map: PathBuf,
    /// The heatmap over the image.
    pub overlay: PathBuf,
    /// The verdict.
    pub json: PathBuf,
}

impl ImageOutputs {
    fn files(&self) -> [&Path; 3] {
        [&self.json, &self.map, &self.overlay]
    }
}

/// Every file a run writes, checked against each other, the inputs and the disk.
#[derive(Debug)]
pub struct OutputLayout {
    /// The outputs of each input image, in the inputs' order.
    pub images: Vec<ImageOutputs>,
    /// The run summary.
    pub summary: PathBuf,
}

/// How the layout treats files already in the output folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Any output that already exists is refused.
    Refuse,
    /// Outputs that already exist are replaced.
    Overwrite,
}

/// Lays out the outputs of `images` under `out`: an image at `<base>/a/b/x.png` gets
/// `<out>/a/b/x.json`, `x_map.png` and `x_overlay.png`, where `<base>` is `root` if given
/// (every image must lie under it) and otherwise the deepest folder that holds all the
/// images. Refuses two images that would write the same file (compared without regard to
/// case, as Windows and macOS file systems do), an output that is one of the input images,
/// and, with [`Existing::Refuse`], any output that already exists.
pub fn plan(
    images: &[PathBuf],
    out: &Path,
    root: Option<&Path>,
    existing: Existing,
) -> Result<OutputLayout> {
    let resolved = images
        .iter()
        .map(|p| resolve(p))
        .collect::<Result<Vec<_>>>()?;
    let base = match root {
        Some(root) => std::fs::canonicalize(root).map_err(|e| Error::io(root, "find", &e))?,
        None => common_folder(&resolved)?,
    };
    let mut layout = OutputLayout {
        images: Vec::with_capacity(images.len()),
        summary: out.join(SUMMARY_FILE),
    };
    for (image, full) in images.iter().zip(&resolved) {
        let relative = full.strip_prefix(&base).map_err(|_| {
            Error::invalid_argument(format!(
                "{} is not under --root {}",
                image.display(),
                base.display()
            ))
        })?;
        let folder = out.join(relative.parent().unwrap_or(Path::new("")));
        let stem = relative
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into());
        layout.images.push(ImageOutputs {
            map: folder.join(format!("{stem}_map.png")),
            overlay: folder.join(format!("{stem}_overlay.png")),
            json: folder.join(format!("{stem}.json")),
        });
    }
    refuse_collisions(images, &resolved, &layout)?;
    refuse_inputs_as_outputs(images, &layout)?;
    if existing == Existing::Refuse {
        refuse_existing(out, &layout)?;
    }
    Ok(layout)
}

/// The image's path with its folder made absolute and free of `.`, `..` and links, and
/// its file name kept as given (a linked image keeps its own name).
fn resolve(image: &Path) -> Result<PathBuf> {
    let name = image.file_name().ok_or_else(|| {
        Error::invalid_argument(format!("{} names no image file", image.display()))
    })?;
    let folder = match image.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let folder = std::fs::canonicalize(folder).map_err(|e| Error::io(folder, "find", &e))?;
    Ok(folder.join(name))
}

/// The deepest folder that holds every one of the resolved `images`.
fn common_folder(images: &[PathBuf]) -> Result<PathBuf> {
    let mut common: Vec<Component> = Vec::new();
    for (i, image) in images.iter().enumerate() {
        let folder: Vec<Component> = image
            .parent()
            .into_iter()
            .flat_map(|p| p.components())
            .collect();
        if i == 0 {
            common = folder;
        } else {
            let same = common
                .iter()
                .zip(&folder)
                .take_while(|(a, b)| a == b)
                .count();
            common.truncate(same);
        }
    }
    let base: PathBuf = common.iter().collect();
    // Only Windows paths on different drives share nothing; mirroring them needs a choice.
    if base.as_os_str().is_empty() || !base.has_root() {
        return Err(Error::invalid_argument(
            "the images share no folder (different drives?); score them in separate runs",
        ));
    }
    Ok(base)
}

/// A file name compared as a case-insensitive file system compares it.
fn folded(path: &Path) -> String {
    path.to_string_lossy().to_lowercase()
}

fn refuse_collisions(
    images: &[PathBuf],
    resolved: &[PathBuf],
    layout: &OutputLayout,
) -> Result<()> {
    let mut writer: HashMap<String, usize> = HashMap::new();
    for (i, outputs) in layout.images.iter().enumerate() {
        for file in outputs.files() {
            if folded(file) == folded(&layout.summary) {
                return Err(Error::invalid_argument(format!(
                    "{} would write {}, the run summary's name",
                    images[i].display(),
                    file.display()
                )));
            }
            let Some(&j) = writer.get(&folded(file)) else {
                writer.insert(folded(file), i);
                continue;
            };
            let (first, second) = (images[j].display(), images[i].display());
            return Err(Error::invalid_argument(if resolved[i] == resolved[j] {
                format!("{second} is given twice ({first}); name each image once")
            } else {
                format!(
                    "{first} and {second} would both write {}; score them in separate runs \
                     or rename one",
                    file.display()
                )
            }));
        }
    }
    Ok(())
}

/// Refuses an output that is one of the images (with `--out` the images' own folder, the
/// map of `x.png` is `x_map.png`, which may be another input), even when overwriting is
/// allowed: a run must never destroy what it scores.
fn refuse_inputs_as_outputs(images: &[PathBuf], layout: &OutputLayout) -> Result<()> {
    let inputs: HashMap<PathBuf, &PathBuf> = images
        .iter()
        .filter_map(|p| std::fs::canonicalize(p).ok().map(|c| (c, p)))
        .collect();
    for file in layout.images.iter().flat_map(ImageOutputs::files) {
        if let Some(input) = std::fs::canonicalize(file)
            .ok()
            .and_then(|c| inputs.get(&c))
        {
            return Err(Error::invalid_argument(format!(
                "the results would replace the input image {}; choose another --out",
                input.display()
            )));
        }
    }
    Ok(())
}

fn refuse_existing(out: &Path, layout: &OutputLayout) -> Result<()> {
    let taken: Vec<&Path> = std::iter::once(layout.summary.as_path())
        .chain(layout.images.iter().flat_map(ImageOutputs::files))
        .filter(|f| f.symlink_metadata().is_ok())
        .collect();
    let Some(first) = taken.first() else {
        return Ok(());
    };
    let more = match taken.len() {
        1 => String::new(),
        n => format!(" and {} more", n - 1),
    };
    Err(Error::invalid_argument(format!(
        "{} already holds results of an earlier run ({}{more}); pass --overwrite to replace \
         them, or choose another --out",
        out.display(),
        first.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"").unwrap();
    }

    fn tree(names: &[&str]) -> (tempfile::TempDir, Vec<PathBuf>) {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<PathBuf> = names.iter().map(|n| dir.path().join(n)).collect();
        files.iter().for_each(|f| touch(f));
        (dir, files)
    }

    fn message(r: Result<OutputLayout>) -> String {
        r.unwrap_err().message().to_string()
    }

    #[test]
    fn mirrors_folders_below_the_common_one() {
        let (dir, files) = tree(&["test/good/000.png", "test/crack/000.png", "test/000.png"]);
        let out = dir.path().join("out");
        let layout = plan(&files, &out, None, Existing::Refuse).unwrap();
        let json: Vec<PathBuf> = layout.images.iter().map(|o| o.json.clone()).collect();
        assert_eq!(
            json,
            [
                out.join("good/000.json"),
                out.join("crack/000.json"),
                out.join("000.json")
            ]
        );
        assert_eq!(layout.images[0].map, out.join("good/000_map.png"));
        assert_eq!(layout.images[0].overlay, out.join("good/000_overlay.png"));
        assert_eq!(layout.summary, out.join("results.csv"));
        // One image: its own folder is the base.
        let layout = plan(&files[..1], &out, None, Existing::Refuse).unwrap();
        assert_eq!(layout.images[0].json, out.join("000.json"));
    }

    #[test]
    fn a_root_fixes_the_base() {
        let (dir, files) = tree(&["test/good/000.png", "other/000.png"]);
        let out = dir.path().join("out");
        let root = dir.path().join("test");
        let layout = plan(&files[..1], &out, Some(&root), Existing::Refuse).unwrap();
        assert_eq!(layout.images[0].json, out.join("good/000.json"));
        let err = message(plan(&files, &out, Some(&root), Existing::Refuse));
        assert!(err.contains("other/000.png is not under --root"), "{err}");
        // `.` and `..` in a path are resolved before mirroring.
        let odd = dir.path().join("test/good/../good/./000.png");
        let layout = plan(&[odd], &out, Some(&root), Existing::Refuse).unwrap();
        assert_eq!(layout.images[0].json, out.join("good/000.json"));
    }

    #[test]
    fn collisions_are_refused() {
        let (dir, files) = tree(&["a/000.png", "a/000.jpg", "a/B.png", "a/b.PNG"]);
        let out = dir.path().join("out");
        let err = message(plan(&files[..2], &out, None, Existing::Refuse));
        assert!(
            err.contains("000.png and ") && err.contains("000.jpg would both write"),
            "{err}"
        );
        let err = message(plan(&files[2..], &out, None, Existing::Refuse));
        assert!(err.contains("would both write"), "{err}");
        let again = dir.path().join("a/../a/000.png");
        let err = message(plan(
            &[files[0].clone(), again],
            &out,
            None,
            Existing::Refuse,
        ));
        assert!(err.contains("is given twice"), "{err}");
        // Nothing was created.
        assert!(!out.exists());
    }

    #[test]
    fn earlier_results_are_refused_unless_overwriting() {
        let (dir, files) = tree(&["a/000.png", "a/001.png"]);
        let out = dir.path().join("out");
        plan(&files, &out, None, Existing::Refuse).unwrap();
        touch(&out.join("001_overlay.png"));
        let err = message(plan(&files, &out, None, Existing::Refuse));
        assert!(
            err.contains("001_overlay.png") && err.contains("--overwrite"),
            "{err}"
        );
        touch(&out.join("results.csv"));
        let err = message(plan(&files, &out, None, Existing::Refuse));
        assert!(
            err.contains("results.csv and 1 more") && err.contains("--overwrite"),
            "{err}"
        );
        plan(&files, &out, None, Existing::Overwrite).unwrap();
    }

    #[test]
    fn inputs_are_never_outputs() {
        // Results written into the images' own folder would replace `x_map.png`.
        let (dir, files) = tree(&["a/x.png", "a/x_map.png"]);
        let out = dir.path().join("a");
        let err = message(plan(&files, &out, None, Existing::Overwrite));
        assert!(err.contains("replace the input image"), "{err}");
        assert!(err.contains("x_map.png"), "{err}");
    }
}
