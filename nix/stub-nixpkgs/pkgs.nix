# Stub packages: real derivations (they evaluate, get store paths and can be
# referenced) whose builder is never run; `nix flake check --no-build`.
{ lib, system }:
let
  stub = name: extra: derivation ({
    inherit name system;
    builder = "/bin/sh";
    args = [ "-c" "echo 'stub-nixpkgs cannot build ${name}' >&2; exit 1" ];
  } // extra) // { meta = { }; };

  # Keep only what a derivation can carry (drop functions, meta, passthru).
  drvAttrs = attrs: lib.filterAttrs
    (n: v: !(builtins.elem n [ "meta" "passthru" "name" "src" ]) && !(builtins.isFunction v)
           && !(builtins.isAttrs v && !(lib.isDerivation v)))
    attrs;

  pythonPackage = name: stub "python3.11-${name}-stub" { pname = name; };
  pythonNames = [
    "setuptools" "aiohttp" "pyyaml" "cryptography" "pynacl" "peewee" "psycopg2" "prometheus-client"
    "aiohttp-jinja2" "jinja2" "jsonschema" "fastjsonschema" "pytest" "pytest-timeout" "hypothesis" "mypy" "types-pyyaml"
  ];

  python3Packages = lib.genAttrs pythonNames pythonPackage // {
    buildPythonApplication = attrs:
      let drv = stub "${attrs.pname}-${attrs.version}" (drvAttrs attrs // { src = "${attrs.src}"; });
      in drv // { meta = attrs.meta or { }; } // (attrs.passthru or { });
  };

  self = {
    inherit lib system python3Packages;
    stdenv.hostPlatform.system = system;
    callPackage = fn: overrides:
      let f = if builtins.isFunction fn then fn else import fn;
      in f (builtins.intersectAttrs (builtins.functionArgs f) self // overrides);
    python3 = stub "python3-3.11-stub" { } // {
      pkgs = python3Packages;
      withPackages = select: stub "python3-3.11-env-stub" { packages = select python3Packages; };
    };
    mkShell = attrs: stub (attrs.name or "nix-shell") (drvAttrs attrs);
    formats.yaml = { }: {
      # JSON is YAML; real nixpkgs renders with remarshal to the same data.
      generate = name: value: builtins.toFile name (builtins.toJSON value);
      type = lib.types.mk "YAML value" (_: true);
    };
  } // lib.genAttrs [ "bash" "coreutils" "openssl" "postgresql" "ruff" "nix" "systemd" "gnugrep" ]
    (name: stub "${name}-stub" { });
in
self
