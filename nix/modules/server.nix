# NixOS module for the AAMI config server.
#
# `services.aami-server.settings` mirrors /etc/aami/server.yaml (sections
# server, database, compat, retention, agents, logging), rendered with
# pkgs.formats.yaml; null keys are left out so the server's defaults apply. The
# sandbox comes from systemd/aami-server.service, the file the installers ship.
#
# A PostgreSQL password must not go into the Nix store: put
# AAMI_DATABASE_URL=postgresql://... in `environmentFile` instead of
# settings.database.url.
{ self }:
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption mkEnableOption mkIf types;
  cfg = config.services.aami-server;
  s = cfg.settings;
  unit = import ../lib/systemd-unit.nix (builtins.readFile ../../systemd/aami-server.service);
  yaml = pkgs.formats.yaml { };
  configFile = yaml.generate "server.yaml" (lib.filterAttrsRecursive (_: v: v != null) s);
  port = lib.toInt (lib.last (lib.splitString ":" s.server.listen));
  opt = type: default: description: mkOption { inherit type default description; };
in
{
  options.services.aami-server = {
    enable = mkEnableOption "the AAMI config server";

    package = mkOption {
      type = types.package;
      default = self.packages.${pkgs.stdenv.hostPlatform.system}.aami-server;
      description = "The package providing bin/aami-server.";
    };

    environmentFile = opt (types.nullOr types.str) null
      "File of VAR=value lines (AAMI_DATABASE_URL with its password), outside the Nix store.";

    openFirewall = opt types.bool false "Open the TCP port of settings.server.listen.";

    settings = {
      server = {
        listen = opt types.str "127.0.0.1:8080" "HOST:PORT to listen on.";
        tls_cert = opt (types.nullOr types.str) null "TLS certificate chain (PEM), readable by group aami.";
        tls_key = opt (types.nullOr types.str) null "TLS private key (PEM), readable by group aami.";
        processes = opt (types.nullOr types.ints.positive) null
          "Server processes sharing the port (SO_REUSEPORT); one per core. Default 1.";
      };
      database.url = opt types.str "sqlite:////var/lib/aami-server/aami.db"
        "sqlite:///PATH or postgresql://USER@HOST:PORT/DB (no password here: see environmentFile).";
      compat.legacy_checks = opt types.bool false
        "Answer the old cron runner's unauthenticated GET /api/v1/checks/... (migration only).";
      retention.executions = opt types.str "30d" "Keep execution history this long (0: forever).";
      agents = {
        poll_interval = opt (types.nullOr types.str) null "Default agent poll interval.";
        heartbeat_interval = opt (types.nullOr types.str) null "Default agent heartbeat interval.";
      };
      logging.level = opt (types.enum [ "debug" "info" "warning" "error" ]) "info" "Log level.";
    };
  };

  config = mkIf cfg.enable {
    assertions = [{
      assertion = (s.server.tls_cert == null) == (s.server.tls_key == null);
      message = "services.aami-server.settings.server: set tls_cert and tls_key together";
    }];

    environment.etc."aami/server.yaml".source = configFile;
    environment.systemPackages = [ cfg.package ];

    users.users.aami = {
      isSystemUser = true;
      group = "aami";
      home = "/var/lib/aami-server";
      description = "AAMI config server";
    };
    users.groups.aami = { };

    networking.firewall.allowedTCPPorts = lib.optional cfg.openFirewall port;

    systemd.services.aami-server = {
      description = unit.Unit.Description;
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" "postgresql.service" ];
      restartTriggers = [ configFile ];
      serviceConfig = unit.Service // {
        ExecStart = "${cfg.package}/bin/aami-server serve --config /etc/aami/server.yaml";
      } // lib.optionalAttrs (cfg.environmentFile != null) {
        EnvironmentFile = cfg.environmentFile;
      };
    };
  };
}
