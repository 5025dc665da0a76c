# A miniature NixOS module evaluator for the stub: enough to evaluate this
# repository's modules the way NixOS would, without NixOS.
#
# Supported: modules as paths, functions or attribute sets; `imports`;
# `options` declared with mkOption (defaults, and type checks at the leaves);
# mkIf (pushed down, so `config = mkIf cfg.enable {...}` does not recurse),
# mkMerge, mkDefault/mkForce priorities; lists concatenate, attribute sets merge.
# Paths no option declares (systemd.services.*, environment.etc.*) are merged
# structurally, as NixOS's own declarations would. `assertions` are enforced.
# The result's config.system.build.toplevel is a derivation carrying the
# rendered units, /etc entries and users as JSON (never built).
{ lib, pkgs }:
{ system, modules, specialArgs ? { } }:
let
  inherit (builtins) attrNames concatMap filter foldl' isAttrs isFunction isList length;

  args = { inherit lib pkgs config options; } // specialArgs;
  load = m: if builtins.isPath m || builtins.isString m then import m else m;
  call = m: let f = load m; in if isFunction f then f args else f;
  collect = ms: concatMap (m: let r = call m; in [ r ] ++ collect (r.imports or [ ])) ms;
  evaluated = collect modules;

  configOf = r:
    if r ? config || r ? options then r.config or { }
    else removeAttrs r [ "imports" "_file" "key" ];
  options = foldl' lib.recursiveUpdate { } (map (r: r.options or { }) evaluated);

  isOption = o: isAttrs o && (o._type or null) == "option";
  isNode = v: isAttrs v && !(lib.isDerivation v) && !(v ? _type) && !(v ? outPath);
  active = d: lib.all (c: c) d.conds;
  showPath = path: builtins.concatStringsSep "." path;

  # Strip mkIf / mkMerge / mkOverride wrappers into plain definitions.
  norm = d:
    let v = d.value; t = if isAttrs v then v._type or null else null; in
    if t == "if" then norm (d // { conds = d.conds ++ [ v.condition ]; value = v.content; })
    else if t == "merge" then concatMap (c: norm (d // { value = c; })) v.contents
    else if t == "override" then norm (d // { prio = v.priority; value = v.content; })
    else [ d ];

  leaf = path: opt: defs:
    let
      live = filter active defs;
      best = foldl' (m: d: if d.prio < m then d.prio else m) 9999 live;
      values = map (d: d.value) (filter (d: d.prio == best) live);
      merged =
        if values == [ ] then
          (if opt != null && opt ? default then opt.default
           else throw "The option `${showPath path}' is used but not defined.")
        else if lib.all isList values then builtins.concatLists values
        else if lib.all isNode values then foldl' lib.recursiveUpdate { } values
        else if length values == 1 then builtins.head values
        else throw "The option `${showPath path}' has conflicting definitions.";
    in
    if opt != null && opt ? type && !(opt.type.check merged)
    then throw "The option `${showPath path}' is not of type `${opt.type.name}'."
    else merged;

  mergeAt = path: opt: defs:
    let
      ndefs = concatMap norm defs;
      declared = opt != null;
      sub = n: map (d: d // { value = d.value.${n}; })
        (filter (d: isNode d.value && d.value ? ${n}) ndefs);
      names = lib.unique (concatMap (d: if isNode d.value then attrNames d.value else [ ]) ndefs
        ++ (if declared then attrNames opt else [ ]));
      # Below an undeclared path, a name exists only if some definition is live.
      keep = n: declared || path == [ ] || lib.any active (concatMap norm (sub n));
      children = lib.listToAttrs (map
        (n: { name = n; value = mergeAt (path ++ [ n ]) (if declared then opt.${n} or null else null) (sub n); })
        (filter keep names));
    in
    if isOption opt then leaf path opt ndefs
    else if !declared && ndefs != [ ] && !(lib.all (d: isNode d.value) ndefs) then leaf path null ndefs
    else children;

  config = mergeAt [ ] options (map (r: { conds = [ ]; prio = 100; value = configOf r; }) evaluated);

  failed = filter (a: !a.assertion) (config.assertions or [ ]);
  rendered = {
    services = builtins.toJSON (config.systemd.services or { });
    etc = builtins.toJSON (lib.mapAttrs (_: e: e.source or e.text or null) (config.environment.etc or { }));
    users = builtins.toJSON (config.users.users or { });
  };
  # Forcing the toplevel forces the whole rendered configuration (every type
  # check), as `nix flake check` only asks whether it is a derivation.
  toplevel =
    if failed != [ ] then throw "Failed assertions:\n- ${builtins.concatStringsSep "\n- " (map (a: a.message) failed)}"
    else builtins.deepSeq rendered (derivation (rendered // {
      name = "nixos-system-stub";
      inherit system;
      builder = "/bin/sh";
      args = [ "-c" "exit 1" ];
    }));
in
{
  inherit options;
  config = lib.recursiveUpdate config { system.build.toplevel = toplevel; };
}
