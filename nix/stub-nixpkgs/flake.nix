# A stand-in for nixpkgs, for evaluating this repository's flake without network.
#
# It provides only what ../../flake.nix, ../package.nix and ../modules/*.nix
# touch: a small `lib`, `legacyPackages.<system>` with stub derivations that are
# never built, and `lib.nixosSystem`, a miniature module evaluator (options,
# defaults, mkIf/mkMerge/mkDefault/mkForce, type checks at option leaves). Use:
#   nix flake check --no-build --override-input nixpkgs path:./nix/stub-nixpkgs
# With the real nixpkgs the same flake builds real packages and NixOS systems.
{
  description = "Offline stand-in for nixpkgs (evaluation only)";

  outputs = { self }:
    let
      lib = import ./lib.nix;
      systems = [ "x86_64-linux" "aarch64-linux" ];
    in
    {
      lib = lib // {
        nixosSystem = args: import ./nixos.nix {
          inherit lib;
          pkgs = self.legacyPackages.${args.system};
        } args;
      };
      legacyPackages = lib.genAttrs systems (system: import ./pkgs.nix { inherit lib system; });
      nixosModules = { };
    };
}
