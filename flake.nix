{
  description = "AAMI: signed script execution on cluster nodes (agent, config server, CLI)";

  # No flake.lock is committed: it cannot be produced without network here. The
  # first `nix flake lock` (or any build) on a connected machine writes one.
  # Offline evaluation, as CI does it:
  #   nix flake check --no-build --override-input nixpkgs path:./nix/stub-nixpkgs
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.05";

  outputs = { self, nixpkgs }:
    let
      inherit (nixpkgs) lib;
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      aamiPackage = pkgs: program: pkgs.callPackage ./nix/package.nix { inherit program; };
    in
    {
      packages = forAllSystems (pkgs: rec {
        aami = aamiPackage pkgs null;
        aami-agent = aamiPackage pkgs "aami-agent";
        aami-server = aamiPackage pkgs "aami-server";
        default = aami;
      });

      nixosModules = {
        aami-agent = import ./nix/modules/agent.nix { inherit self; };
        aami-server = import ./nix/modules/server.nix { inherit self; };
      };

      # An example node that runs both services; `nix flake check` evaluates it,
      # which exercises both modules end to end.
      nixosConfigurations.example = lib.nixosSystem {
        system = "x86_64-linux";
        modules = [
          self.nixosModules.aami-agent
          self.nixosModules.aami-server
          ./nix/example-configuration.nix
        ];
      };

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [
            (pkgs.python3.withPackages (ps: with ps; [
              aiohttp pyyaml cryptography peewee psycopg2 prometheus-client aiohttp-jinja2 jinja2
              jsonschema fastjsonschema
              pytest pytest-timeout hypothesis mypy types-pyyaml
            ]))
            pkgs.ruff
            pkgs.openssl
            pkgs.postgresql
            pkgs.systemd
          ];
        };
      });
    };
}
