// C# bindings for varad over its C ABI (P/Invoke). Build with any C# compiler (mcs,
// csc, dotnet); the native library "varad" (libvarad.so / varad.dll) must be on the
// library path. Errors throw VaradException with the library's last-error message.
//
//   using (var model = Varad.Model.Create(new Varad.ModelOptions("backbone.onnx"))) {
//       model.Train(goodImages, null);
//       Varad.ScoreResult r = model.Score(image);
//   }
using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace Varad
{
    /// <summary>The VaradStatus codes of varad.h.</summary>
    public enum Status
    {
        Ok = 0, InvalidArgument = 1, NullPointer = 2, InvalidImage = 3, ImageTooLarge = 4,
        ImageDecode = 5, Io = 6, RuntimeNotFound = 7, Runtime = 8, BackboneContract = 9,
        Config = 10, ModelFile = 11, Cuda = 12, Cancelled = 13, BufferTooSmall = 14,
        Panic = 15, Internal = 16, Busy = 17, NotCalibrated = 18,
        BatchTooLarge = 19, CacheFull = 20, NotTrained = 21,
    }

    /// <summary>The VaradPixelFormat values.</summary>
    public enum PixelFormat : uint { Mono8 = 1, Mono16 = 2, Rgb8 = 3, Bgr8 = 4, Rgba8 = 5, Bgra8 = 6 }

    /// <summary>The VaradDevice values.</summary>
    public enum Device : uint { Auto = 0, Cpu = 1, Cuda = 2, AsSaved = 255 }

    /// <summary>The VaradDecision values.</summary>
    public enum Decision : uint { Pass = 1, Review = 2, Fail = 3 }

    /// <summary>The VaradThreshold values.</summary>
    public enum Threshold : uint { Image = 1, Review = 2, Fail = 3, Pixel = 4 }

    /// <summary>The VaradBeyondData values: what calibration does when the normal scores
    /// are too few for a requested rate (NativeParams.beyond_data).</summary>
    public enum BeyondData : uint { LogNormalTail = 0, Refuse = 1 }

    /// <summary>The VaradBankSelection values: how each nearest-neighbour bank's tokens are
    /// chosen (NativeParams.neighbour_bank_selection).</summary>
    public enum BankSelection : uint { Random = 0, Coreset = 1 }

    /// <summary>The VaradBankLevels values: which levels get a nearest-neighbour bank
    /// (NativeParams.neighbour_bank_levels).</summary>
    public enum BankLevels : uint { Coarsest = 0, All = 1 }

    /// <summary>The VaradNeighbourTerm values: how a position's distance to a bank becomes
    /// the nearest-neighbour term (NativeParams.neighbour_term).</summary>
    public enum NeighbourTerm : uint { AboveNormal = 0, Scaled = 1 }

    /// <summary>The VaradLogLevel values.</summary>
    public enum LogLevel : uint { Error = 1, Warn = 2, Info = 3, Debug = 4 }

    /// <summary>A failed varad call: the status and the library's message.</summary>
    public class VaradException : Exception
    {
        public Status Status { get; private set; }
        public VaradException(Status status, string message) : base(status + ": " + message)
        {
            Status = status;
        }
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct NativeParams
    {
        public UIntPtr size;
        public IntPtr backbone_path;
        public IntPtr runtime_path;
        public IntPtr levels;
        public uint input_width, input_height, resize_mode, device, cuda_device, threads;
        public ulong max_image_pixels, seed;
        public uint prediction_step, n_layers, d_state, expand, d_conv, detach_target, epochs, batch_size;
        public double learning_rate, weight_decay, beta1, beta2, eps;
        public ulong cache_limit_bytes;
        public double calibration_fraction;
        public uint min_calibration_images, min_region_area;
        public float sigma;
        public uint top_k;
        public double target_false_reject_rate, review_band, pixel_quantile;
        public ulong max_batch_bytes, cache_disk_limit_bytes;
        public uint context_mean;
        public uint map_norm;
        public float neighbour_weight;
        public uint neighbour_bank_tokens;
        public uint cross_fit_folds;
        public uint beyond_data;
        public double target_false_fail_rate;
        public uint catch_known_defects;
        public uint reserved;
        public uint neighbour_bank_selection;
        public uint neighbour_bank_levels;
        public uint neighbour_term;
        public uint reserved2;
        public uint neighbour_probes;
        public uint reserved3;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct NativeLoadParams
    {
        public UIntPtr size;
        public IntPtr backbone_path;
        public IntPtr runtime_path;
        public uint device, cuda_device;
        public int threads;
        public uint reserved;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct NativeScoreParams
    {
        public UIntPtr size;
        public IntPtr roi;
        public UIntPtr roi_len;
        public uint raw_map;
        public uint reserved;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct ImageView
    {
        public IntPtr data;
        public uint width, height;
        public UIntPtr stride;
        public uint format;
    }

    /// <summary>A defect region (VaradRegion).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct Region
    {
        public ulong area;
        public uint x, y, width, height;
        public double centroid_x, centroid_y;
        public float peak;
        public uint peak_x, peak_y;
        public float mean;
    }

    /// <summary>Training progress (VaradProgress).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct Progress
    {
        public UIntPtr size;
        public uint epoch, epochs, step, steps;
        public double loss, elapsed_seconds, remaining_seconds;
    }

    /// <summary>What training did (VaradTrainReport).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct TrainReport
    {
        public UIntPtr size;
        public uint train_images, calibration_images, epochs, steps;
        public double final_loss, elapsed_seconds;
        public ulong cache_memory_bytes, cache_spilled_bytes;
    }

    /// <summary>VaradCalibrationReport, as the library fills it.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct NativeCalibrationReport
    {
        public UIntPtr size;
        public uint n, cross_fitted, held_out, folds;
        public double achievable_rate;
        public double review_requested;
        public float review_threshold;
        public uint review_extrapolated;
        public double review_expected, review_conformal_rate, review_upper_bound;
        public ulong review_images_needed, review_images_needed_confident;
        public double fail_requested;
        public float fail_threshold;
        public uint fail_extrapolated;
        public double fail_expected, fail_conformal_rate, fail_upper_bound;
        public ulong fail_images_needed, fail_images_needed_confident;
        public uint known_defects, escapes, review_lowered;
        public float review_lowered_from;
    }

    /// <summary>What one decision threshold promises about good parts (rates are
    /// fractions).</summary>
    public class RateReport
    {
        /// <summary>The rate asked for (0 for a fail threshold from review_band).</summary>
        public double Requested;
        public float Threshold;
        /// <summary>The rate to expect: the requested one when Extrapolated (an assumption
        /// of a log-normal tail), else ConformalRate.</summary>
        public double Expected;
        /// <summary>The distribution-free rate on average over calibrations.</summary>
        public double ConformalRate;
        /// <summary>The distribution-free 95% upper bound of the rate for this calibration.</summary>
        public double UpperBound;
        public bool Extrapolated;
        /// <summary>Good images the requested rate needs on average (1 / rate - 1).</summary>
        public ulong ImagesNeeded;
        /// <summary>Good images for the requested rate to hold with 95% confidence.</summary>
        public ulong ImagesNeededConfident;
    }

    /// <summary>What a calibration was fitted on and what its thresholds promise
    /// (varad_get_calibration_report).</summary>
    public class CalibrationReport
    {
        /// <summary>Normal scores the thresholds rest on: CrossFitted + HeldOut.</summary>
        public uint N, CrossFitted, HeldOut, Folds;
        /// <summary>The smallest rate N scores support without extrapolating, 1 / (N + 1).</summary>
        public double AchievableRate;
        public RateReport Review, Fail;
        /// <summary>Known-defective examples scored, and those of them that pass.</summary>
        public uint KnownDefects, Escapes;
        /// <summary>The review threshold before it was lowered to catch the known
        /// defects; null when it was not.</summary>
        public float? ReviewLoweredFrom;
    }

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate int ProgressCallback(IntPtr progress, IntPtr userData);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    internal delegate void LogCallback(uint level, IntPtr message, IntPtr userData);

    internal static class Native
    {
        const string Lib = "varad";
        [DllImport(Lib)] public static extern uint varad_version_number();
        [DllImport(Lib)] public static extern IntPtr varad_version_string();
        [DllImport(Lib)] public static extern IntPtr varad_last_error_message();
        // The params structs are filled in the caller's memory with this binding's size
        // (never returned by value), so a newer library with longer structs still fits.
        [DllImport(Lib)] public static extern Status varad_params_init(out NativeParams p, UIntPtr size);
        [DllImport(Lib)] public static extern Status varad_load_params_init(out NativeLoadParams p, UIntPtr size);
        [DllImport(Lib)] public static extern Status varad_score_params_init(out NativeScoreParams p, UIntPtr size);

        public static NativeParams DefaultParams()
        {
            NativeParams p;
            Check(varad_params_init(out p, (UIntPtr)Marshal.SizeOf(typeof(NativeParams))));
            return p;
        }

        public static NativeLoadParams DefaultLoadParams()
        {
            NativeLoadParams p;
            Check(varad_load_params_init(out p, (UIntPtr)Marshal.SizeOf(typeof(NativeLoadParams))));
            return p;
        }

        public static NativeScoreParams DefaultScoreParams()
        {
            NativeScoreParams p;
            Check(varad_score_params_init(out p, (UIntPtr)Marshal.SizeOf(typeof(NativeScoreParams))));
            return p;
        }
        [DllImport(Lib)] public static extern Status varad_create(ref NativeParams p, out IntPtr model);
        [DllImport(Lib)] public static extern void varad_destroy(IntPtr model);
        [DllImport(Lib)] public static extern Status varad_save(ModelHandle model, byte[] path);
        [DllImport(Lib)] public static extern Status varad_load(byte[] path, ref NativeLoadParams p, out IntPtr model);
        [DllImport(Lib)] public static extern Status varad_active_device(ModelHandle model, out uint device, out uint index);
        [DllImport(Lib)] public static extern Status varad_get_threshold(ModelHandle model, uint which, out float value);
        [DllImport(Lib)] public static extern Status varad_set_threshold(ModelHandle model, uint which, float value);
        [DllImport(Lib)] public static extern Status varad_set_decision_thresholds(ModelHandle model, float review, float fail);
        [DllImport(Lib)] public static extern Status varad_training_set_create(ModelHandle model, out IntPtr set);
        [DllImport(Lib)] public static extern Status varad_training_set_add(IntPtr set, ModelHandle model, ref ImageView view);
        [DllImport(Lib)] public static extern Status varad_training_set_add_defective(IntPtr set, ModelHandle model, ref ImageView view);
        [DllImport(Lib)] public static extern Status varad_training_set_defective_count(IntPtr set, out UIntPtr count);
        [DllImport(Lib)] public static extern Status varad_get_calibration_report(ModelHandle model, ref NativeCalibrationReport report);
        [DllImport(Lib)] public static extern Status varad_set_log_callback(LogCallback callback, IntPtr userData, uint maxLevel);
        [DllImport(Lib)] public static extern void varad_training_set_destroy(IntPtr set);
        [DllImport(Lib)] public static extern Status varad_train(ModelHandle model, IntPtr set, ProgressCallback cb, IntPtr user, ref TrainReport report);
        [DllImport(Lib)] public static extern Status varad_score(ModelHandle model, ref ImageView view, ref NativeScoreParams p, out IntPtr result);
        [DllImport(Lib)] public static extern void varad_score_result_destroy(IntPtr result);
        [DllImport(Lib)] public static extern Status varad_result_map(IntPtr r, out IntPtr map, out UIntPtr len, out uint w, out uint h);
        [DllImport(Lib)] public static extern Status varad_result_image_score(IntPtr r, out float score);
        [DllImport(Lib)] public static extern Status varad_result_normalised_score(IntPtr r, out float score);
        [DllImport(Lib)] public static extern Status varad_result_decision(IntPtr r, out uint decision);
        [DllImport(Lib)] public static extern Status varad_result_p_value(IntPtr r, out double pValue);
        [DllImport(Lib)] public static extern Status varad_result_regions(IntPtr r, out IntPtr regions, out UIntPtr count, out UIntPtr found);

        public static string Utf8(IntPtr p)
        {
            if (p == IntPtr.Zero) return "";
            int n = 0;
            while (Marshal.ReadByte(p, n) != 0) n++;
            byte[] bytes = new byte[n];
            Marshal.Copy(p, bytes, 0, n);
            return Encoding.UTF8.GetString(bytes);
        }

        public static byte[] CString(string s)
        {
            if (s == null) return null;
            byte[] utf8 = Encoding.UTF8.GetBytes(s);
            byte[] z = new byte[utf8.Length + 1];
            Array.Copy(utf8, z, utf8.Length);
            return z;
        }

        public static void Check(Status status)
        {
            if (status != Status.Ok) throw new VaradException(status, Utf8(varad_last_error_message()));
        }
    }

    /// <summary>Owns a VaradModel*; frees it with varad_destroy exactly once.</summary>
    public sealed class ModelHandle : SafeHandleZeroOrMinusOneIsInvalid
    {
        public ModelHandle() : base(true) { }
        internal ModelHandle(IntPtr p) : base(true) { SetHandle(p); }
        protected override bool ReleaseHandle()
        {
            Native.varad_destroy(handle);
            return true;
        }
    }

    /// <summary>Model parameters (VaradParams); defaults from varad_params_init(). Each field's
    /// range is stated in varad.h; Model.Create throws VaradException (Status.Config) naming
    /// every field out of range, before the backbone is opened.</summary>
    public class ModelOptions
    {
        public NativeParams Params;
        public string Backbone;
        public ModelOptions(string backbone)
        {
            Backbone = backbone;
            Params = Native.DefaultParams();
        }
    }

    /// <summary>An image in managed memory: rows of Width pixels, Stride bytes apart.</summary>
    public class Image
    {
        public byte[] Pixels;
        public uint Width, Height, Stride;
        public PixelFormat Format;
        public Image(byte[] pixels, uint width, uint height, uint stride, PixelFormat format)
        {
            Pixels = pixels; Width = width; Height = height; Stride = stride; Format = format;
        }
    }

    /// <summary>The result of scoring one image.</summary>
    public class ScoreResult
    {
        public float[] Map;
        public uint Width, Height;
        public float ImageScore;
        /// <summary>Null when the model is not calibrated (so are Decision and Regions).</summary>
        public float? NormalisedScore;
        public Decision? Decision;
        public Region[] Regions;
        /// <summary>The conformal p-value of ImageScore against the calibration's normal
        /// scores, (1 + #{normal scores >= score}) / (n + 1): small is unlike any good
        /// part. Null when the model is not calibrated.</summary>
        public double? PValue;
    }

    /// <summary>The library's log messages (varad_set_log_callback).</summary>
    public static class Log
    {
        static readonly object gate = new object();
        // The delegate the library calls: kept referenced until replaced, or the GC would
        // free it while native code holds it.
        static LogCallback Current { get; set; }

        /// <summary>Sends what the library logs at <paramref name="maxLevel"/> and more
        /// severe to <paramref name="callback"/> (level, message); null stops it. The
        /// callback may run on any thread, several at once; an exception it throws is
        /// dropped (it must not unwind into the library).</summary>
        public static void SetCallback(Action<LogLevel, string> callback, LogLevel maxLevel)
        {
            lock (gate)
            {
                LogCallback native = null;
                if (callback != null)
                    native = (level, message, user) =>
                    {
                        try { callback((LogLevel)level, Native.Utf8(message)); }
                        catch (Exception) { }
                    };
                Native.Check(Native.varad_set_log_callback(native, IntPtr.Zero, (uint)maxLevel));
                // Replaced only now: the library no longer calls the previous one.
                Current = native;
            }
        }
    }

    /// <summary>A varad model. Score may be called from many threads at once, also while
    /// Train or a threshold change runs (scores finish on the model they started with; the
    /// new one is published atomically). A second Train, or a threshold change, while one
    /// Train runs throws VaradException Busy.</summary>
    public sealed class Model : IDisposable
    {
        /// <summary>The varad.h version these bindings were written for.</summary>
        public const uint HeaderVersionNumber = 1004000;
        readonly ModelHandle handle;

        static void CheckVersion()
        {
            uint v = Native.varad_version_number();
            uint major = v / 1000000, minor = v / 1000 % 1000;
            uint headerMajor = HeaderVersionNumber / 1000000, headerMinor = HeaderVersionNumber / 1000 % 1000;
            // Another major version (for 0.x: another minor) may have another ABI; an older
            // minor version lacks functions these bindings call.
            if (major != headerMajor || minor < headerMinor || (major == 0 && minor != headerMinor))
                throw new VaradException(Status.InvalidArgument,
                    "libvarad " + LibraryVersion + " does not match these bindings");
        }

        public static string LibraryVersion { get { return Native.Utf8(Native.varad_version_string()); } }

        Model(IntPtr p) { handle = new ModelHandle(p); }

        public static Model Create(ModelOptions options)
        {
            CheckVersion();
            NativeParams p = options.Params;
            GCHandle path = GCHandle.Alloc(Native.CString(options.Backbone), GCHandleType.Pinned);
            try
            {
                p.backbone_path = path.AddrOfPinnedObject();
                IntPtr model;
                Native.Check(Native.varad_create(ref p, out model));
                return new Model(model);
            }
            finally { path.Free(); }
        }

        public static Model Load(string path)
        {
            CheckVersion();
            NativeLoadParams lp = Native.DefaultLoadParams();
            IntPtr model;
            Native.Check(Native.varad_load(Native.CString(path), ref lp, out model));
            return new Model(model);
        }

        public void Dispose() { handle.Dispose(); }

        ModelHandle H
        {
            get
            {
                if (handle.IsClosed) throw new ObjectDisposedException("Model");
                return handle;
            }
        }

        public void Save(string path) { Native.Check(Native.varad_save(H, Native.CString(path))); }

        public Device ActiveDevice
        {
            get
            {
                uint device, index;
                Native.Check(Native.varad_active_device(H, out device, out index));
                return (Device)device;
            }
        }

        public float GetThreshold(Threshold which)
        {
            float v;
            Native.Check(Native.varad_get_threshold(H, (uint)which, out v));
            return v;
        }

        public void SetThreshold(Threshold which, float value)
        {
            Native.Check(Native.varad_set_threshold(H, (uint)which, value));
        }

        public void SetDecisionThresholds(float review, float fail)
        {
            Native.Check(Native.varad_set_decision_thresholds(H, review, fail));
        }

        /// <summary>What the calibration rests on and what its thresholds promise
        /// (VaradException NotCalibrated before training).</summary>
        public CalibrationReport GetCalibrationReport()
        {
            NativeCalibrationReport c = new NativeCalibrationReport();
            c.size = new UIntPtr((uint)Marshal.SizeOf(typeof(NativeCalibrationReport)));
            Native.Check(Native.varad_get_calibration_report(H, ref c));
            CalibrationReport r = new CalibrationReport();
            r.N = c.n; r.CrossFitted = c.cross_fitted; r.HeldOut = c.held_out; r.Folds = c.folds;
            r.AchievableRate = c.achievable_rate;
            r.Review = new RateReport
            {
                Requested = c.review_requested, Threshold = c.review_threshold,
                Expected = c.review_expected, ConformalRate = c.review_conformal_rate,
                UpperBound = c.review_upper_bound, Extrapolated = c.review_extrapolated != 0,
                ImagesNeeded = c.review_images_needed, ImagesNeededConfident = c.review_images_needed_confident,
            };
            r.Fail = new RateReport
            {
                Requested = c.fail_requested, Threshold = c.fail_threshold,
                Expected = c.fail_expected, ConformalRate = c.fail_conformal_rate,
                UpperBound = c.fail_upper_bound, Extrapolated = c.fail_extrapolated != 0,
                ImagesNeeded = c.fail_images_needed, ImagesNeededConfident = c.fail_images_needed_confident,
            };
            r.KnownDefects = c.known_defects;
            r.Escapes = c.escapes;
            r.ReviewLoweredFrom = c.review_lowered != 0 ? (float?)c.review_lowered_from : null;
            return r;
        }

        static ulong BytesPerPixel(PixelFormat f)
        {
            switch (f)
            {
                case PixelFormat.Mono8: return 1;
                case PixelFormat.Mono16: return 2;
                case PixelFormat.Rgb8: case PixelFormat.Bgr8: return 3;
                case PixelFormat.Rgba8: case PixelFormat.Bgra8: return 4;
                default: return 0;
            }
        }

        static ImageView View(Image image, GCHandle pinned)
        {
            ImageView v;
            v.data = pinned.AddrOfPinnedObject();
            v.width = image.Width;
            v.height = image.Height;
            v.stride = new UIntPtr(image.Stride);
            v.format = (uint)image.Format;
            // The library checks the geometry; the buffer's length only managed code knows.
            ulong bpp = BytesPerPixel(image.Format), row = image.Width * bpp;
            if (bpp != 0 && image.Height > 0 && image.Stride >= row &&
                (ulong)image.Pixels.Length < (ulong)image.Stride * (image.Height - 1) + row)
                throw new ArgumentException("the pixel buffer is shorter than the image");
            return v;
        }

        /// <summary>Trains on good images; progress returns true to cancel (then
        /// VaradException Cancelled and the model is unchanged).</summary>
        public TrainReport Train(IEnumerable<Image> images, Func<Progress, bool> progress)
        {
            return Train(images, progress, null);
        }

        /// <summary>Trains on good images, with known-defective examples (images of bad
        /// parts, may be null): never trained on, they are scored at calibration and
        /// CalibrationReport counts those that pass (with NativeParams.catch_known_defects
        /// the review threshold is lowered until none does).</summary>
        public TrainReport Train(IEnumerable<Image> images, Func<Progress, bool> progress, IEnumerable<Image> defective)
        {
            IntPtr set;
            Native.Check(Native.varad_training_set_create(H, out set));
            try
            {
                foreach (Image image in images)
                {
                    GCHandle pin = GCHandle.Alloc(image.Pixels, GCHandleType.Pinned);
                    try
                    {
                        ImageView v = View(image, pin);
                        Native.Check(Native.varad_training_set_add(set, H, ref v));
                    }
                    finally { pin.Free(); }
                }
                foreach (Image image in defective ?? new Image[0])
                {
                    GCHandle pin = GCHandle.Alloc(image.Pixels, GCHandleType.Pinned);
                    try
                    {
                        ImageView v = View(image, pin);
                        Native.Check(Native.varad_training_set_add_defective(set, H, ref v));
                    }
                    finally { pin.Free(); }
                }
                Exception raised = null;
                ProgressCallback cb = (p, user) =>
                {
                    if (progress == null) return 0;
                    try { return progress((Progress)Marshal.PtrToStructure(p, typeof(Progress))) ? 1 : 0; }
                    catch (Exception e) { raised = e; return 1; }
                };
                TrainReport report = new TrainReport();
                report.size = new UIntPtr((uint)Marshal.SizeOf(typeof(TrainReport)));
                Status status = Native.varad_train(H, set, cb, IntPtr.Zero, ref report);
                GC.KeepAlive(cb);
                if (raised != null) throw raised;
                Native.Check(status);
                return report;
            }
            finally { Native.varad_training_set_destroy(set); }
        }

        /// <summary>Scores one image (thread-safe).</summary>
        public ScoreResult Score(Image image)
        {
            GCHandle pin = GCHandle.Alloc(image.Pixels, GCHandleType.Pinned);
            try { return ScoreView(View(image, pin)); }
            finally { pin.Free(); }
        }

        /// <summary>Scores an image in unmanaged memory without copying it (a camera or
        /// HALCON buffer, an OpenCV Mat's data): rows of <paramref name="width"/> pixels,
        /// <paramref name="stride"/> bytes apart; the memory must stay valid for the call.
        /// Thread-safe.</summary>
        public ScoreResult Score(IntPtr pixels, uint width, uint height, uint stride, PixelFormat format)
        {
            if (pixels == IntPtr.Zero) throw new ArgumentNullException("pixels");
            ImageView v;
            v.data = pixels;
            v.width = width;
            v.height = height;
            v.stride = new UIntPtr(stride);
            v.format = (uint)format;
            return ScoreView(v);
        }

        ScoreResult ScoreView(ImageView v)
        {
            NativeScoreParams sp = Native.DefaultScoreParams();
            IntPtr r = IntPtr.Zero;
            try
            {
                Native.Check(Native.varad_score(H, ref v, ref sp, out r));
                ScoreResult result = new ScoreResult();
                IntPtr map;
                UIntPtr len;
                Native.Check(Native.varad_result_map(r, out map, out len, out result.Width, out result.Height));
                result.Map = new float[(int)len.ToUInt64()];
                Marshal.Copy(map, result.Map, 0, result.Map.Length);
                Native.Check(Native.varad_result_image_score(r, out result.ImageScore));
                float norm;
                Status s = Native.varad_result_normalised_score(r, out norm);
                if (s == Status.Ok)
                {
                    result.NormalisedScore = norm;
                    uint d;
                    Native.Check(Native.varad_result_decision(r, out d));
                    result.Decision = (Decision)d;
                    double pValue;
                    Native.Check(Native.varad_result_p_value(r, out pValue));
                    result.PValue = pValue;
                    IntPtr regions;
                    UIntPtr count, found;
                    Native.Check(Native.varad_result_regions(r, out regions, out count, out found));
                    result.Regions = new Region[(int)count.ToUInt64()];
                    int size = Marshal.SizeOf(typeof(Region));
                    for (int i = 0; i < result.Regions.Length; i++)
                        result.Regions[i] = (Region)Marshal.PtrToStructure(new IntPtr(regions.ToInt64() + i * size), typeof(Region));
                }
                else if (s != Status.NotCalibrated) Native.Check(s);
                return result;
            }
            finally
            {
                Native.varad_score_result_destroy(r);
            }
        }
    }
}
