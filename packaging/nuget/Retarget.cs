// Retarget: rewrites a library compiled by mcs against mono's mscorlib so that it
// references netstandard 2.0 instead, as a `netstandard2.0` build would. mcs cannot
// compile against netstandard directly: the netstandard.dll Debian's mono ships is a
// facade whose types are forwarded to mscorlib. Every type the binding uses is part of
// .NET Standard 2.0 under the same name, so renaming the assembly reference is the whole
// change; Check then lists the references, and refuses an assembly that still names
// mscorlib, System or System.Core.
//
//   mono Retarget.exe IN.dll OUT.dll    retarget
//   mono Retarget.exe --check DLL       print the assembly references; fail unless netstandard only
using System;
using System.Linq;
using Mono.Cecil;

static class Retarget
{
    static readonly byte[] NetStandardToken = { 0xcc, 0x7b, 0x13, 0xff, 0xcd, 0x2d, 0xdd, 0x51 };

    static int Main(string[] args)
    {
        if (args.Length == 2 && args[0] == "--check")
            return Check(args[1]);
        if (args.Length != 2)
        {
            Console.Error.WriteLine("usage: Retarget.exe IN.dll OUT.dll | --check DLL");
            return 2;
        }
        var module = ModuleDefinition.ReadModule(args[0]);
        foreach (var reference in module.AssemblyReferences)
        {
            if (reference.Name != "mscorlib" && reference.Name != "System" && reference.Name != "System.Core")
                continue;
            reference.Name = "netstandard";
            reference.Version = new Version(2, 0, 0, 0);
            reference.PublicKeyToken = NetStandardToken;
        }
        // Two references may now both read netstandard: keep one and point every type
        // reference at it.
        var first = module.AssemblyReferences.First(r => r.Name == "netstandard");
        foreach (var type in module.GetTypeReferences())
            if (type.Scope is AssemblyNameReference scope && scope.Name == "netstandard")
                type.Scope = first;
        foreach (var extra in module.AssemblyReferences.Where(r => r.Name == "netstandard" && r != first).ToList())
            module.AssemblyReferences.Remove(extra);
        module.Write(args[1]);
        return Check(args[1]);
    }

    static int Check(string path)
    {
        var module = ModuleDefinition.ReadModule(path);
        Console.WriteLine(module.Assembly.Name.FullName);
        foreach (var reference in module.AssemblyReferences)
            Console.WriteLine("  references " + reference.FullName);
        bool onlyNetStandard = module.AssemblyReferences.All(r => r.Name == "netstandard" && r.Version == new Version(2, 0, 0, 0));
        if (!onlyNetStandard)
        {
            Console.Error.WriteLine(path + " references assemblies other than netstandard 2.0.0.0");
            return 1;
        }
        return 0;
    }
}
