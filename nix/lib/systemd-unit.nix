# Parse a systemd unit file into { Unit = { ... }; Service = { ... }; Install = { ... }; }.
#
# The NixOS modules take their hardening from ../../systemd/*.service through
# this parser, so the Debian/installer units and the NixOS units cannot drift
# apart. A key given once maps to its string; a repeated key (SystemCallFilter=,
# DeviceAllow=) maps to the list of its values in order, which NixOS renders back
# as repeated lines. Uses builtins only: it runs under any nixpkgs.
text:
let
  inherit (builtins) filter foldl' head isString mapAttrs match split elemAt length;

  lines = filter isString (split "\n" text);
  trim = s: let m = match "[[:space:]]*(.*[^[:space:]])[[:space:]]*" s; in if m == null then "" else head m;

  step = acc: raw:
    let
      line = trim raw;
      section = match "\\[([A-Za-z]+)]" line;
      assignment = match "([A-Za-z]+)=(.*)" line;
      key = elemAt assignment 0;
      value = trim (elemAt assignment 1);
      current = acc.sections.${acc.current} or { };
    in
    if line == "" || match "[#;].*" line != null then acc
    else if section != null then acc // { current = head section; }
    else if assignment != null && acc.current != null then acc // {
      sections = acc.sections // {
        ${acc.current} = current // { ${key} = (current.${key} or [ ]) ++ [ value ]; };
      };
    }
    else throw "systemd unit: cannot parse line: ${line}";

  parsed = foldl' step { current = null; sections = { }; } lines;
in
mapAttrs (_: keys: mapAttrs (_: values: if length values == 1 then head values else values) keys) parsed.sections
