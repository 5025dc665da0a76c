# The part of nixpkgs' `lib` this repository uses, with the same names and meanings.
let
  inherit (builtins) attrNames concatMap elem filter foldl' isAttrs isList listToAttrs;
  lib = rec {
    inherit (builtins) all any concatStringsSep head tail length listToAttrs mapAttrs toJSON;
    id = x: x;
    last = list: builtins.elemAt list (length list - 1);
    genAttrs = names: f: listToAttrs (map (n: { name = n; value = f n; }) names);
    nameValuePair = name: value: { inherit name value; };
    mapAttrs' = f: set: listToAttrs (map (n: f n set.${n}) (attrNames set));
    mapAttrsToList = f: set: map (n: f n set.${n}) (attrNames set);
    filterAttrs = pred: set:
      listToAttrs (concatMap (n: if pred n set.${n} then [ { name = n; value = set.${n}; } ] else [ ]) (attrNames set));
    isDerivation = v: isAttrs v && (v.type or null) == "derivation";
    filterAttrsRecursive = pred: set: mapAttrs
      (_: v: if isAttrs v && !(isDerivation v) then filterAttrsRecursive pred v else v)
      (filterAttrs pred set);
    recursiveUpdate = a: b: a // mapAttrs
      (n: v: if isAttrs v && isAttrs (a.${n} or null) && !(isDerivation v) then recursiveUpdate a.${n} v else v)
      b;
    optional = cond: x: if cond then [ x ] else [ ];
    optionals = cond: xs: if cond then xs else [ ];
    optionalAttrs = cond: set: if cond then set else { };
    optionalString = cond: s: if cond then s else "";
    unique = foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ];
    splitString = sep: s: filter builtins.isString (builtins.split (escapeRegex sep) s);
    escapeRegex = s: builtins.replaceStrings [ "." "[" "]" "*" "+" "?" "(" ")" "|" "^" "$" "\\" ]
      [ "\\." "\\[" "\\]" "\\*" "\\+" "\\?" "\\(" "\\)" "\\|" "\\^" "\\$" "\\\\" ] s;
    hasPrefix = pre: s: builtins.substring 0 (builtins.stringLength pre) s == pre;
    toInt = s: let n = builtins.fromJSON s; in
      if builtins.isInt n then n else throw "toInt: not an integer: ${s}";
    cleanSource = src: src;
    licenses.asl20 = { spdxId = "Apache-2.0"; };
    platforms.linux = [ "x86_64-linux" "aarch64-linux" ];
    literalExpression = text: { _type = "literalExpression"; inherit text; };

    # Module system vocabulary (interpreted by ./nixos.nix).
    mkOption = attrs: attrs // { _type = "option"; };
    mkEnableOption = name: mkOption { type = types.bool; default = false; description = "Whether to enable ${name}."; };
    mkIf = condition: content: { _type = "if"; inherit condition content; };
    mkMerge = contents: { _type = "merge"; inherit contents; };
    mkOverride = priority: content: { _type = "override"; inherit priority content; };
    mkDefault = mkOverride 1000;
    mkForce = mkOverride 50;

    types = rec {
      mk = name: check: { inherit name check; };
      str = mk "string" builtins.isString;
      lines = str;
      bool = mk "boolean" builtins.isBool;
      int = mk "integer" builtins.isInt;
      ints.positive = mk "positive integer" (v: builtins.isInt v && v > 0);
      port = mk "16 bit port" (v: builtins.isInt v && v >= 0 && v < 65536);
      path = mk "path" (v: builtins.isPath v || (builtins.isString v && hasPrefix "/" v) || isDerivation v);
      package = mk "package" isDerivation;
      enum = values: mk "one of ${toJSON values}" (v: elem v values);
      nullOr = t: mk "null or ${t.name}" (v: v == null || t.check v);
      listOf = t: mk "list of ${t.name}" (v: isList v && all t.check v);
      attrsOf = t: mk "attribute set of ${t.name}" (v: isAttrs v && all t.check (builtins.attrValues v));
    };
  };
in
lib
