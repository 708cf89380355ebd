// The C# bindings' test: train the tiny test ViT, score, thresholds, save/load, errors,
// cancel, dispose. Usage: mono VaradTest.exe tests/data/tiny_vit.onnx  (exit 0 = pass)
using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;
using Varad;

static class VaradTest
{
    static int failures = 0;

    static void Check(bool ok, string what)
    {
        if (!ok) { Console.Error.WriteLine("check failed: " + what); failures++; }
    }

    static Image Texture(int seed, uint size)
    {
        int phase = seed * 37 % 17;
        byte[] px = new byte[size * size * 3];
        for (int y = 0; y < size; y++)
            for (int x = 0; x < size; x++)
            {
                byte v = (byte)((((x + phase) / 6 + y / 9) % 2 == 0) ? 180 : 60);
                int i = 3 * (y * (int)size + x);
                px[i] = v; px[i + 1] = (byte)(v / 2 + 20); px[i + 2] = (byte)(255 - v);
            }
        return new Image(px, size, size, size * 3, PixelFormat.Rgb8);
    }

    static ModelOptions Tiny(string backbone)
    {
        ModelOptions o = new ModelOptions(backbone);
        o.Params.input_width = o.Params.input_height = 112;
        o.Params.device = (uint)Device.Cpu;
        o.Params.threads = 2;
        o.Params.prediction_step = 2;
        o.Params.d_state = 4;
        o.Params.epochs = 3;
        o.Params.learning_rate = 2e-3;
        o.Params.seed = 5;
        return o;
    }

    static IEnumerable<Image> Good(int n)
    {
        for (int i = 0; i < n; i++) yield return Texture(i, 128);
    }

    /// <summary>Known-defective examples: the texture with a bright square.</summary>
    static IEnumerable<Image> Defective(int n)
    {
        for (int i = 0; i < n; i++)
        {
            Image image = Texture(50 + i, 128);
            for (int y = 50; y < 90; y++)
                for (int x = 40; x < 80; x++)
                    for (int c = 0; c < 3; c++) image.Pixels[3 * (y * 128 + x) + c] = 255;
            yield return image;
        }
    }

    static void CheckReport(CalibrationReport c, Model model, uint knownDefects)
    {
        Console.WriteLine("calibration: n " + c.N + " (" + c.CrossFitted + " cross-fitted, " + c.HeldOut +
            " held out); review " + c.Review.Threshold + " expected " + c.Review.Expected + " bound " +
            c.Review.UpperBound + "; fail " + c.Fail.Threshold + " expected " + c.Fail.Expected +
            "; known defects " + c.KnownDefects + ", escapes " + c.Escapes);
        Check(c.N >= 3 && c.N == c.CrossFitted + c.HeldOut, "report n");
        Check(c.AchievableRate == 1.0 / (c.N + 1.0), "achievable rate");
        Check(c.Review.Requested == 0.01 && c.Fail.Requested == 0.001, "requested rates");
        Check(c.Review.Threshold == model.GetThreshold(Threshold.Review), "review threshold");
        Check(c.Fail.Threshold == model.GetThreshold(Threshold.Fail), "fail threshold");
        Check(c.Review.Threshold <= c.Fail.Threshold, "review <= fail");
        foreach (RateReport rate in new[] { c.Review, c.Fail })
            Check(rate.Expected > 0 && rate.Expected <= 1 && rate.ConformalRate > 0 &&
                  rate.ConformalRate <= rate.UpperBound && rate.UpperBound <= 1, "rates in (0, 1]");
        Check(c.Review.ImagesNeeded == 99 && c.Fail.ImagesNeeded == 999, "images needed");
        Check(c.Fail.Extrapolated && c.Fail.ImagesNeededConfident > 999, "fail extrapolated");
        Check(c.KnownDefects == knownDefects && c.Escapes <= c.KnownDefects, "known defects");
    }

    static int Main(string[] args)
    {
        string backbone = args[0];
        Console.WriteLine("varad " + Model.LibraryVersion);
        Check(Model.LibraryVersion.StartsWith((Model.HeaderVersionNumber / 1000000) + "."), "library version");
        List<string> logged = new List<string>();
        Log.SetCallback((level, message) => { lock (logged) logged.Add(level + ": " + message); }, LogLevel.Debug);
        try { Log.SetCallback(null, (LogLevel)9); Check(false, "bad log level"); }
        catch (VaradException e) { Check(e.Status == Status.InvalidArgument, "log level refused"); }

        string dir = Path.Combine(Path.GetTempPath(), "varad-csharp-" + System.Diagnostics.Process.GetCurrentProcess().Id);
        Directory.CreateDirectory(dir);
        string file = Path.Combine(dir, "m.varad");
        Image probe = Texture(30, 128);
        float[] map;
        using (Model model = Model.Create(Tiny(backbone)))
        {
            Check(model.ActiveDevice == Device.Cpu, "cpu");
            try { model.Score(probe); Check(false, "an untrained model scored"); }
            catch (VaradException e) { Check(e.Status == Status.NotTrained, "NotTrained"); }
            try { model.GetThreshold(Threshold.Image); Check(false, "threshold before training"); }
            catch (VaradException e) { Check(e.Status == Status.NotCalibrated, "NotCalibrated"); }

            // Cancel at the first step: model unchanged (still untrained).
            try { model.Train(Good(5), p => true); Check(false, "cancel"); }
            catch (VaradException e) { Check(e.Status == Status.Cancelled, "Cancelled"); }
            try { model.Score(probe); Check(false, "cancelled training trained the model"); }
            catch (VaradException e) { Check(e.Status == Status.NotTrained, "still NotTrained"); }

            int steps = 0;
            TrainReport report = model.Train(Good(6), p => { steps++; return false; });
            Check(report.train_images + report.calibration_images == 6, "report images");
            Check(steps == (int)report.steps, "progress per step");
            ScoreResult r = model.Score(probe);
            map = r.Map;
            Check(r.Width == 128 && r.Height == 128 && r.Map.Length == 128 * 128, "map size");
            Check(r.Decision != null && r.NormalisedScore > 0, "decision");
            CalibrationReport calibration = model.GetCalibrationReport();
            CheckReport(calibration, model, 0);
            Check(calibration.ReviewLoweredFrom == null, "not lowered");
            Check(r.PValue >= calibration.AchievableRate && r.PValue <= 1, "p-value in [1/(n+1), 1]");
            Console.WriteLine("score " + r.ImageScore + " normalised " + r.NormalisedScore + " decision " + r.Decision + " regions " + r.Regions.Length);
            float fail = model.GetThreshold(Threshold.Fail);
            try { model.SetThreshold(Threshold.Review, fail + 1); Check(false, "review above fail"); }
            catch (VaradException e) { Check(e.Status == Status.InvalidArgument && e.Message.Contains("review"), "range message: " + e.Message); }
            model.SetDecisionThresholds(r.ImageScore * 2, r.ImageScore * 3);
            Check(model.Score(probe).Decision == Decision.Pass, "pass below the moved thresholds");
            model.Save(file);
        }
        using (Model loaded = Model.Load(file))
        {
            CalibrationReport fromFile = loaded.GetCalibrationReport();
            Check(fromFile.N > 0 && fromFile.Fail.Threshold == loaded.GetThreshold(Threshold.Fail), "report after load");
            Check(Equal(loaded.Score(probe).Map, map), "loaded model scores the same");
            GCHandle pinned = GCHandle.Alloc(probe.Pixels, GCHandleType.Pinned);
            try
            {
                ScoreResult fromPointer = loaded.Score(pinned.AddrOfPinnedObject(), probe.Width, probe.Height, probe.Stride, probe.Format);
                Check(Equal(fromPointer.Map, map), "an IntPtr view scores as the byte[] image");
            }
            finally { pinned.Free(); }
            Image shortBuffer = new Image(new byte[10], 4, 4, 12, PixelFormat.Rgb8);
            try { loaded.Score(shortBuffer); Check(false, "short buffer"); }
            catch (ArgumentException) { }
            Image shortStride = new Image(new byte[48], 4, 4, 2, PixelFormat.Rgb8);
            try { loaded.Score(shortStride); Check(false, "short stride"); }
            catch (VaradException e) { Check(e.Status == Status.InvalidImage && e.Message.Contains("stride"), "stride message"); }
            Image badFormat = new Image(new byte[48], 4, 4, 12, (PixelFormat)0);
            try { loaded.Score(badFormat); Check(false, "bad format"); }
            catch (VaradException e) { Check(e.Status == Status.InvalidImage, "InvalidImage"); }
            loaded.Dispose();
            try { loaded.Score(probe); Check(false, "use after dispose"); }
            catch (ObjectDisposedException) { }
        }
        ModelOptions catching = Tiny(backbone);
        Check(catching.Params.cross_fit_folds == 5 && catching.Params.target_false_fail_rate == 0.001 &&
              catching.Params.beyond_data == (uint)BeyondData.LogNormalTail && catching.Params.catch_known_defects == 0,
              "new params defaults");
        catching.Params.catch_known_defects = 1;
        using (Model model = Model.Create(catching))
        {
            try { model.GetCalibrationReport(); Check(false, "report before training"); }
            catch (VaradException e) { Check(e.Status == Status.NotCalibrated, "report NotCalibrated"); }
            model.Train(Good(6), null, Defective(2));
            CalibrationReport c = model.GetCalibrationReport();
            CheckReport(c, model, 2);
            Check(c.Escapes == 0, "catching known defects leaves no escape");
            Check(c.ReviewLoweredFrom == null || c.ReviewLoweredFrom > c.Review.Threshold, "lowered from above");
        }
        ModelOptions refusing = Tiny(backbone);
        refusing.Params.beyond_data = 7;
        try { Model.Create(refusing); Check(false, "unknown beyond_data"); }
        catch (VaradException e) { Check(e.Status == Status.InvalidArgument && e.Message.Contains("params.beyond_data"), "beyond_data message"); }
        Log.SetCallback(null, LogLevel.Warn);
        Console.WriteLine("log: " + logged.Count + " messages" + (logged.Count > 0 ? ", first " + logged[0] : ""));
        Check(logged.Count > 0, "the log callback received the library's messages");
        try { Model.Load(Path.Combine(dir, "missing.varad")); Check(false, "missing file"); }
        catch (VaradException e) { Check(e.Status == Status.Io && e.Message.Contains("missing.varad"), "Io message"); }
        Directory.Delete(dir, true);
        if (failures > 0) { Console.Error.WriteLine("VaradTest: " + failures + " checks failed"); return 1; }
        Console.WriteLine("VaradTest: all checks passed");
        return 0;
    }

    static bool Equal(float[] a, float[] b)
    {
        if (a.Length != b.Length) return false;
        for (int i = 0; i < a.Length; i++) if (BitConverter.ToInt32(BitConverter.GetBytes(a[i]), 0) != BitConverter.ToInt32(BitConverter.GetBytes(b[i]), 0)) return false;
        return true;
    }
}
