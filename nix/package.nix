# AAMI from this source tree: one Python application, three programs.
#
# `program = null` installs all three console scripts (the `aami` package);
# `program = "aami-agent"` or `"aami-server"` keeps that one program and ships its
# systemd unit and sysusers file under $out/lib, like a distribution package.
{ lib, python3Packages, program ? null }:
let
  pyproject = builtins.fromTOML (builtins.readFile ../pyproject.toml);
  programs = [ "aami" "aami-agent" "aami-server" ];
  single = program != null;
in
assert single -> builtins.elem program programs;
python3Packages.buildPythonApplication {
  pname = if single then program else "aami";
  inherit (pyproject.project) version;
  pyproject = true;
  src = lib.cleanSource ../.;

  build-system = [ python3Packages.setuptools ];
  dependencies = with python3Packages; [
    aiohttp
    pyyaml
    cryptography
    pynacl
    peewee
    psycopg2
    prometheus-client
    aiohttp-jinja2
    jinja2
    jsonschema
    fastjsonschema
  ];
  # pyproject.toml asks for psycopg2-binary (wheels for pip users); nixpkgs
  # builds psycopg2 from source against its own libpq, which provides the same module.
  pythonRemoveDeps = [ "psycopg2-binary" ];

  # The test suite needs PostgreSQL, network namespaces and Chromium; it runs in
  # the project's CI (make test). Here we only check that the packages import.
  doCheck = false;
  pythonImportsCheck = [ "aami.agent" "aami.server" "aami.trust" "aami.cli" "aami.bundle" "aami.policyfile" "aami.units" ];

  postInstall = lib.optionalString single ''
    for bin in ${builtins.concatStringsSep " " programs}; do
      [ "$bin" = "${program}" ] || rm -f "$out/bin/$bin"
    done
    install -Dm644 systemd/${program}.service "$out/lib/systemd/system/${program}.service"
    substituteInPlace "$out/lib/systemd/system/${program}.service" \
      --replace-fail /usr/bin/${program} "$out/bin/${program}"
    install -Dm644 systemd/${program}.sysusers.conf "$out/lib/sysusers.d/${program}.conf"
  '';

  meta = {
    description = "AAMI: signed script execution on cluster nodes";
    license = lib.licenses.asl20;
    platforms = lib.platforms.linux;
    mainProgram = if single then program else "aami";
  };
}
