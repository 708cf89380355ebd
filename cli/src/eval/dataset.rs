//! Anomaly-detection data sets on disk: the MVTec AD, VisA and BTAD layouts, detected
//! from what the folder holds.
//!
//! - MVTec AD: `<root>/<category>/train/good/*`, `<category>/test/<type>/*`, masks at
//!   `<category>/ground_truth/<type>/<stem>_mask.png` (`test/good` has none).
//! - VisA: `<root>/split_csv/1cls.csv` with columns `object,split,label,image,mask`, paths
//!   relative to the root.
//! - BTAD: `<root>/<category>/train/ok/*`, `<category>/test/ok|ko/*`, masks at
//!   `<category>/ground_truth/ko/<stem>.png` (or `.bmp`).
//!
//! A root that is itself one MVTec or BTAD category (it has `train/good` or `train/ok`)
//! is read as a data set of that one category.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use varad::image::{read_image_file, ImageLimits, PixelFormat};
use varad::{Error, ErrorKind, Result};

/// The defect type name of normal test images, whatever the layout calls them.
pub const GOOD: &str = "good";

/// Which on-disk layout a data set uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// MVTec AD (and sets written in its layout, such as our synthetic ones).
    MvtecAd,
    /// VisA, through `split_csv/1cls.csv`.
    Visa,
    /// BTAD (`ok`/`ko`).
    Btad,
}

/// One test image.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The image file.
    pub path: PathBuf,
    /// The defect type ([`GOOD`] for a normal image).
    pub defect_type: String,
    /// The ground-truth mask file (`None` for a normal image).
    pub mask: Option<PathBuf>,
    /// The image's path relative to its category folder, with `/` separators (how
    /// `defects.json` names it), e.g. `test/crack/000.png`.
    pub key: String,
    /// The defect's size class from `defects.json`, when it gives one.
    pub size_class: Option<String>,
}

impl Sample {
    /// Whether the image shows a defect.
    pub fn is_anomalous(&self) -> bool {
        self.defect_type != GOOD
    }
}

/// One category: normal training images and labelled test images.
#[derive(Debug, Clone, PartialEq)]
pub struct Category {
    /// The category's name.
    pub name: String,
    /// The normal training images, sorted.
    pub train: Vec<PathBuf>,
    /// The test images, sorted by type then name.
    pub test: Vec<Sample>,
}

/// A data set: its layout and its categories.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// The root folder.
    pub root: PathBuf,
    /// The detected layout.
    pub layout: Layout,
    /// The categories, sorted by name (only those asked for).
    pub categories: Vec<Category>,
}

const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "bmp", "tif", "tiff"];

fn is_image(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The image files directly in `dir`, sorted by name.
pub fn image_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, "list", &e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_image(p))
        .collect();
    out.sort();
    Ok(out)
}

fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, "list", &e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    Ok(out)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn missing_mask(image: &Path, tried: &[PathBuf]) -> Error {
    let tried: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
    Error::new(
        ErrorKind::Io,
        format!(
            "defective test image {} has no ground-truth mask (looked for {})",
            image.display(),
            tried.join(" and ")
        ),
    )
}

/// The layout of the category folder `dir`, if it is one.
fn category_layout(dir: &Path) -> Option<Layout> {
    if dir.join("train/good").is_dir() {
        Some(Layout::MvtecAd)
    } else if dir.join("train/ok").is_dir() {
        Some(Layout::Btad)
    } else {
        None
    }
}

/// Reads the category at `dir` in the MVTec AD or BTAD layout.
fn read_folder_category(dir: &Path, name: String, layout: Layout) -> Result<Category> {
    let (good, train_dir) = match layout {
        Layout::Btad => ("ok", dir.join("train/ok")),
        _ => (GOOD, dir.join("train/good")),
    };
    let train = image_files(&train_dir)?;
    if train.is_empty() {
        return Err(Error::invalid_argument(format!(
            "{} has no training images",
            train_dir.display()
        )));
    }
    let test_dir = dir.join("test");
    let mut test = Vec::new();
    for type_dir in subdirs(&test_dir)? {
        let folder = file_name(&type_dir);
        let defect_type = if folder == good {
            GOOD.to_string()
        } else {
            folder.clone()
        };
        for path in image_files(&type_dir)? {
            let mask = if defect_type == GOOD {
                None
            } else {
                let gt = dir.join("ground_truth").join(&folder);
                let candidates = match layout {
                    Layout::Btad => vec![
                        gt.join(format!("{}.png", stem(&path))),
                        gt.join(format!("{}.bmp", stem(&path))),
                    ],
                    _ => vec![gt.join(format!("{}_mask.png", stem(&path)))],
                };
                Some(
                    candidates
                        .iter()
                        .find(|c| c.is_file())
                        .cloned()
                        .ok_or_else(|| missing_mask(&path, &candidates))?,
                )
            };
            test.push(Sample {
                key: format!("test/{folder}/{}", file_name(&path)),
                path,
                defect_type: defect_type.clone(),
                mask,
                size_class: None,
            });
        }
    }
    if test.is_empty() {
        return Err(Error::invalid_argument(format!(
            "{} has no test images",
            test_dir.display()
        )));
    }
    let mut category = Category { name, train, test };
    apply_defects_json(dir, &mut category);
    Ok(category)
}

/// Reads the size classes of `<category>/defects.json` into the samples, tolerantly: a
/// missing, unreadable or differently shaped file leaves them `None` (the breakdown by
/// size is then skipped), since another tool writes it and its format may move.
fn apply_defects_json(dir: &Path, category: &mut Category) {
    let Ok(text) = std::fs::read_to_string(dir.join("defects.json")) else {
        return;
    };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
        log::warn!("{}: not JSON, size breakdown skipped", dir.display());
        return;
    };
    // A bare list, or a list under one of the usual keys of an object.
    let entries = match &value {
        serde_json::Value::Array(a) => a.clone(),
        serde_json::Value::Object(o) => ["test", "defects", "images", "items", "records"]
            .iter()
            .find_map(|k| o.get(*k).and_then(|v| v.as_array()).cloned())
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let field = |entry: &serde_json::Value, names: &[&str]| {
        names.iter().find_map(|n| entry.get(*n)).cloned()
    };
    // An image with several defects takes the class of its largest one.
    let mut classes: BTreeMap<String, (f64, String)> = BTreeMap::new();
    for entry in &entries {
        let image = field(entry, &["image", "file", "path"]);
        let class = field(entry, &["size_class", "size"]);
        let (Some(image), Some(class)) = (
            image.as_ref().and_then(|v| v.as_str()),
            class.as_ref().and_then(|v| v.as_str()),
        ) else {
            continue;
        };
        let area = field(entry, &["area", "area_px"])
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0);
        let key = image.trim_start_matches("./").replace('\\', "/");
        let slot = classes
            .entry(key)
            .or_insert((f64::NEG_INFINITY, String::new()));
        if area > slot.0 {
            *slot = (area, class.to_string());
        }
    }
    for sample in &mut category.test {
        if sample.is_anomalous() {
            sample.size_class = classes.get(&sample.key).map(|c| c.1.clone());
        }
    }
}

/// Splits one CSV line at commas, honouring double quotes.
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            _ => fields.last_mut().expect("one field").push(c),
        }
    }
    fields.iter().map(|f| f.trim().to_string()).collect()
}

/// Reads VisA's `split_csv/1cls.csv`.
fn read_visa(root: &Path) -> Result<Vec<Category>> {
    let csv = root.join("split_csv/1cls.csv");
    let text = std::fs::read_to_string(&csv).map_err(|e| Error::io(&csv, "read", &e))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header = csv_fields(lines.next().unwrap_or_default());
    let column = |name: &str| {
        header.iter().position(|h| h == name).ok_or_else(|| {
            Error::invalid_argument(format!(
                "{}: no `{name}` column (expected object,split,label,image,mask)",
                csv.display()
            ))
        })
    };
    let (c_obj, c_split, c_label, c_image, c_mask) = (
        column("object")?,
        column("split")?,
        column("label")?,
        column("image")?,
        column("mask")?,
    );
    let mut categories: BTreeMap<String, Category> = BTreeMap::new();
    for (n, line) in lines.enumerate() {
        let f = csv_fields(line);
        let get = |c: usize| f.get(c).map(String::as_str).unwrap_or("");
        let object = get(c_obj).to_string();
        let image = root.join(get(c_image));
        let category = categories
            .entry(object.clone())
            .or_insert_with(|| Category {
                name: object.clone(),
                train: Vec::new(),
                test: Vec::new(),
            });
        let anomalous = get(c_label) == "anomaly";
        match get(c_split) {
            "train" if !anomalous => category.train.push(image),
            "train" => {}
            "test" => {
                let mask = if anomalous {
                    let m = get(c_mask);
                    let path = root.join(m);
                    if m.is_empty() || !path.is_file() {
                        return Err(missing_mask(&image, &[path]));
                    }
                    Some(path)
                } else {
                    None
                };
                category.test.push(Sample {
                    key: get(c_image).to_string(),
                    path: image,
                    defect_type: if anomalous { "anomaly" } else { GOOD }.to_string(),
                    mask,
                    size_class: None,
                });
            }
            other => {
                return Err(Error::invalid_argument(format!(
                    "{} line {}: unknown split `{other}`",
                    csv.display(),
                    n + 2
                )))
            }
        }
    }
    let mut out: Vec<Category> = categories.into_values().collect();
    for c in &mut out {
        c.train.sort();
        c.test
            .sort_by(|a, b| (&a.defect_type, &a.path).cmp(&(&b.defect_type, &b.path)));
    }
    Ok(out)
}

impl Dataset {
    /// Opens the data set at `root`, detecting its layout, keeping only the categories
    /// named in `only` (all when empty). Every listed file is checked to exist; images are
    /// decoded later, when used.
    pub fn open(root: &Path, only: &[String]) -> Result<Dataset> {
        if !root.is_dir() {
            return Err(Error::new(
                ErrorKind::Io,
                format!("data set folder {} does not exist", root.display()),
            ));
        }
        // Every category's name first, so an unknown `--category` can list them.
        let (layout, all, mut categories) = if root.join("split_csv/1cls.csv").is_file() {
            let categories = read_visa(root)?;
            let all: Vec<String> = categories.iter().map(|c| c.name.clone()).collect();
            (Layout::Visa, all, categories)
        } else if let Some(layout) = category_layout(root) {
            let name = file_name(&root.canonicalize().unwrap_or(root.to_path_buf()));
            let category = read_folder_category(root, name.clone(), layout)?;
            (layout, vec![name], vec![category])
        } else {
            let found: Vec<(PathBuf, Layout)> = subdirs(root)?
                .into_iter()
                .filter_map(|d| category_layout(&d).map(|l| (d, l)))
                .collect();
            let Some(&(_, layout)) = found.first() else {
                return Err(Error::invalid_argument(format!(
                    "{} is not an MVTec AD, VisA or BTAD data set: no split_csv/1cls.csv, \
                     and no <category>/train/good or <category>/train/ok folder",
                    root.display()
                )));
            };
            let all: Vec<String> = found.iter().map(|(d, _)| file_name(d)).collect();
            // Only the wanted categories are read: listing a large set is not free.
            let categories = found
                .iter()
                .filter(|(d, _)| only.is_empty() || only.contains(&file_name(d)))
                .map(|(d, l)| read_folder_category(d, file_name(d), *l))
                .collect::<Result<Vec<_>>>()?;
            (layout, all, categories)
        };
        if let Some(missing) = only.iter().find(|c| !all.contains(c)) {
            return Err(Error::invalid_argument(format!(
                "no category `{missing}` in {}; it has {}",
                root.display(),
                all.join(", ")
            )));
        }
        if !only.is_empty() {
            categories.retain(|c| only.contains(&c.name));
        }
        for c in &categories {
            if c.train.is_empty() {
                return Err(Error::invalid_argument(format!(
                    "category `{}` has no normal training images",
                    c.name
                )));
            }
        }
        Ok(Dataset {
            root: root.to_path_buf(),
            layout,
            categories,
        })
    }
}

/// Reads a ground-truth mask as one byte per pixel (non-zero = defect), checking that it
/// has the image's size. Errors name the file.
pub fn read_mask(path: &Path, width: u32, height: u32) -> Result<Vec<u8>> {
    let image = read_image_file(path, &ImageLimits::default())?;
    if (image.width(), image.height()) != (width, height) {
        return Err(Error::invalid_argument(format!(
            "mask {} is {}x{} but its image is {width}x{height}",
            path.display(),
            image.width(),
            image.height()
        )));
    }
    let bpp = image.format().bytes_per_pixel();
    let data = image.data();
    Ok(match image.format() {
        PixelFormat::Mono16 => data
            .chunks_exact(2)
            .map(|p| u8::from(p[0] != 0 || p[1] != 0))
            .collect(),
        // Any channel set counts (masks come as grey, RGB or palette PNGs).
        _ => data
            .chunks_exact(bpp)
            .map(|p| u8::from(p.iter().take(3.min(bpp)).any(|&v| v != 0)))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use varad::image::{write_png, ImageView};

    fn png(path: &Path, value: u8) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let pixels = vec![value; 8 * 6];
        write_png(
            path,
            &ImageView::packed(&pixels, 8, 6, PixelFormat::Mono8).unwrap(),
        )
        .unwrap();
    }

    fn mvtec(root: &Path, category: &str) {
        let c = root.join(category);
        png(&c.join("train/good/000.png"), 100);
        png(&c.join("train/good/001.png"), 100);
        png(&c.join("test/good/000.png"), 100);
        png(&c.join("test/crack/000.png"), 10);
        png(&c.join("ground_truth/crack/000_mask.png"), 255);
    }

    #[test]
    fn detects_mvtec_with_categories_and_defects_json() {
        let dir = tempfile::tempdir().unwrap();
        mvtec(dir.path(), "bottle");
        mvtec(dir.path(), "cable");
        std::fs::write(
            dir.path().join("bottle/defects.json"),
            r#"[{"image": "test/crack/000.png", "type": "crack", "size_class": "small",
                 "area": 12, "area_fraction": 0.25}]"#,
        )
        .unwrap();
        let d = Dataset::open(dir.path(), &[]).unwrap();
        assert_eq!(d.layout, Layout::MvtecAd);
        assert_eq!(d.categories.len(), 2);
        let b = &d.categories[0];
        assert_eq!(
            (b.name.as_str(), b.train.len(), b.test.len()),
            ("bottle", 2, 2)
        );
        let crack = b.test.iter().find(|s| s.is_anomalous()).unwrap();
        assert_eq!(crack.size_class.as_deref(), Some("small"));
        assert!(crack.mask.as_ref().unwrap().ends_with("000_mask.png"));
        assert_eq!(d.categories[1].test[0].size_class, None);
        let mask = read_mask(crack.mask.as_ref().unwrap(), 8, 6).unwrap();
        assert!(mask.iter().all(|&m| m == 1));
        assert!(read_mask(crack.mask.as_ref().unwrap(), 9, 6).is_err());

        let only = Dataset::open(dir.path(), &["cable".into()]).unwrap();
        assert_eq!(only.categories.len(), 1);
        let err = Dataset::open(dir.path(), &["screw".into()]).unwrap_err();
        assert!(err.message().contains("screw") && err.message().contains("bottle"));
        // The root may be one category.
        let one = Dataset::open(&dir.path().join("cable"), &[]).unwrap();
        assert_eq!(one.categories[0].name, "cable");
    }

    #[test]
    fn reads_the_synthetic_generators_defects_json() {
        let dir = tempfile::tempdir().unwrap();
        mvtec(dir.path(), "brick");
        std::fs::write(
            dir.path().join("brick/defects.json"),
            r#"{"category": "brick", "size": 8, "test": [
                {"file": "test/good/000.png", "mask": null, "defect_type": "good",
                 "size_class": null, "area_px": 0},
                {"file": "test/crack/000.png", "mask": "ground_truth/crack/000_mask.png",
                 "defect_type": "crack", "size_class": "large", "area_px": 48}]}"#,
        )
        .unwrap();
        let d = Dataset::open(dir.path(), &[]).unwrap();
        let classes: Vec<Option<&str>> = d.categories[0]
            .test
            .iter()
            .map(|s| s.size_class.as_deref())
            .collect();
        assert_eq!(classes, [Some("large"), None]);
        // Something else entirely is ignored, not an error.
        std::fs::write(dir.path().join("brick/defects.json"), "{\"x\": 1}").unwrap();
        assert!(Dataset::open(dir.path(), &[]).is_ok());
        std::fs::write(dir.path().join("brick/defects.json"), "not json").unwrap();
        assert!(Dataset::open(dir.path(), &[]).is_ok());
    }

    #[test]
    fn a_missing_mask_names_the_image() {
        let dir = tempfile::tempdir().unwrap();
        mvtec(dir.path(), "bottle");
        png(&dir.path().join("bottle/test/crack/001.png"), 10);
        let err = Dataset::open(dir.path(), &[]).unwrap_err();
        assert!(err.message().contains("001.png"), "{err}");
        assert!(err.message().contains("001_mask.png"), "{err}");
    }

    #[test]
    fn detects_btad() {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("01");
        png(&c.join("train/ok/0000.bmp.png"), 100);
        png(&c.join("test/ok/0000.png"), 100);
        png(&c.join("test/ko/0001.png"), 10);
        png(&c.join("ground_truth/ko/0001.png"), 255);
        let d = Dataset::open(dir.path(), &[]).unwrap();
        assert_eq!(d.layout, Layout::Btad);
        let types: Vec<&str> = d.categories[0]
            .test
            .iter()
            .map(|s| s.defect_type.as_str())
            .collect();
        assert_eq!(types, ["ko", GOOD]);
    }

    #[test]
    fn detects_visa() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        png(&r.join("candle/Data/Images/Normal/000.JPG.png"), 100);
        png(&r.join("candle/Data/Images/Normal/001.png"), 100);
        png(&r.join("candle/Data/Images/Anomaly/002.png"), 10);
        png(&r.join("candle/Data/Masks/Anomaly/002.png"), 255);
        std::fs::create_dir_all(r.join("split_csv")).unwrap();
        std::fs::write(
            r.join("split_csv/1cls.csv"),
            "object,split,label,image,mask\n\
             candle,train,normal,candle/Data/Images/Normal/000.JPG.png,\n\
             candle,test,normal,candle/Data/Images/Normal/001.png,\n\
             candle,test,anomaly,candle/Data/Images/Anomaly/002.png,candle/Data/Masks/Anomaly/002.png\n",
        )
        .unwrap();
        let d = Dataset::open(r, &[]).unwrap();
        assert_eq!(d.layout, Layout::Visa);
        let c = &d.categories[0];
        assert_eq!((c.train.len(), c.test.len()), (1, 2));
        assert!(c.test.iter().any(|s| s.mask.is_some()));
        assert!(Dataset::open(r, &["pcb1".into()]).is_err());
    }

    #[test]
    fn an_unknown_layout_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        png(&dir.path().join("x/y.png"), 1);
        let err = Dataset::open(dir.path(), &[]).unwrap_err();
        assert!(err.message().contains("not an MVTec AD"), "{err}");
    }
}
