# NixOS module for the AAMI node agent.
#
# `services.aami-agent.settings` mirrors /etc/aami/agent.yaml key for key (see
# docs/install.md and docs/architecture.md section 4); it is rendered with pkgs.formats.yaml
# to /etc/aami/agent.yaml. Unset (null) keys are left out so the agent's own
# defaults apply. The unit's sandbox is read from systemd/aami-agent.service, the
# same file the installers ship, with only paths adapted to these settings.
#
# Secrets stay out of the Nix store: the bootstrap token is a file you provision
# (agent.bootstrap_token_file), never a setting.
{ self }:
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption mkEnableOption mkIf types;
  cfg = config.services.aami-agent;
  s = cfg.settings;
  unit = import ../lib/systemd-unit.nix (builtins.readFile ../../systemd/aami-agent.service);
  yaml = pkgs.formats.yaml { };
  configFile = yaml.generate "agent.yaml" (lib.filterAttrsRecursive (_: v: v != null) s);

  opt = type: default: description: mkOption { inherit type default description; };
  duration = types.str;
  defaultStateDir = "/var/lib/aami-agent";
  readWritePaths = lib.optional (s.metrics.textfile_dir != null) "-${s.metrics.textfile_dir}"
    ++ lib.optional (s.agent.state_dir != defaultStateDir) s.agent.state_dir;
in
{
  options.services.aami-agent = {
    enable = mkEnableOption "the AAMI node agent";

    package = mkOption {
      type = types.package;
      default = self.packages.${pkgs.stdenv.hostPlatform.system}.aami-agent;
      description = "The package providing bin/aami-agent.";
    };

    trustedKeys = mkOption {
      type = types.attrsOf types.path;
      default = { };
      example = lib.literalExpression ''{ ops = ./keys/ops.pub; }'';
      description = ''
        Publisher public keys the agent trusts, installed as
        /etc/aami/trusted-keys/NAME.pub (settings.trust.keys_dir).
      '';
    };

    createRunAsUser = opt types.bool true
      "Create the system user named by settings.executor.run_as.";

    extraPackages = opt (types.listOf types.package) [ pkgs.bash pkgs.coreutils ]
      "Packages on the agent's PATH, for the interpreters and tools scripts use.";

    settings = {
      server = {
        url = mkOption {
          type = types.str;
          example = "https://config.example:8443";
          description = "Base URL of the config server.";
        };
        ca_file = opt (types.nullOr types.str) null "Site CA certificate (PEM) to pin.";
        timeout = opt duration "30s" "HTTP timeout per request.";
      };
      agent = {
        hostname = opt (types.nullOr types.str) null "Name to register as (default: the host name).";
        state_dir = opt types.str defaultStateDir "Tokens, accepted versions, spool.";
        poll_interval = opt duration "30s" "How often to poll for assignments.";
        heartbeat_interval = opt duration "30s" "How often to send a heartbeat.";
        # Left unset by default: the agent then reads /etc/aami/bootstrap-token if it
        # exists, and a node that has registered keeps starting after it is deleted.
        bootstrap_token_file = opt (types.nullOr types.str) null
          "File holding the one-time bootstrap token (outside the Nix store).";
      };
      trust.keys_dir = opt types.str "/etc/aami/trusted-keys" "Directory of trusted publisher keys.";
      executor = {
        max_concurrent = opt types.ints.positive 4 "Scripts running at once.";
        default_timeout = opt duration "60s" "Timeout when the policy sets none.";
        output_limit = opt types.str "64KiB" "Kept stdout/stderr per run (the tail).";
        run_as = opt (types.nullOr types.str) "aami-runner" "Default user scripts run as.";
      };
      metrics = {
        listen = opt (types.nullOr types.str) "127.0.0.1:9101" "Prometheus endpoint (null: off).";
        textfile_dir = opt (types.nullOr types.str) "/var/lib/node_exporter/textfile_collector"
          "node_exporter textfile collector directory (null: off).";
      };
      logging = {
        level = opt (types.enum [ "debug" "info" "warning" "error" ]) "info" "Log level.";
        format = opt (types.enum [ "text" "json" ]) "text" "Log format.";
        mask_patterns = opt (types.nullOr (types.listOf types.str)) null
          "Extra regular expressions masked in logs and reported output.";
      };
    };
  };

  config = mkIf cfg.enable {
    assertions = [{
      assertion = lib.hasPrefix "/var/lib/" s.agent.state_dir || s.agent.state_dir == defaultStateDir;
      message = "services.aami-agent.settings.agent.state_dir must live under /var/lib";
    }];

    environment.etc = {
      "aami/agent.yaml".source = configFile;
    } // lib.mapAttrs' (name: key: lib.nameValuePair "aami/trusted-keys/${name}.pub" { source = key; })
      cfg.trustedKeys;

    users.users = lib.optionalAttrs (cfg.createRunAsUser && s.executor.run_as != null) {
      ${s.executor.run_as} = { isSystemUser = true; group = s.executor.run_as; description = "AAMI script runner"; };
    };
    users.groups = lib.optionalAttrs (cfg.createRunAsUser && s.executor.run_as != null) {
      ${s.executor.run_as} = { };
    };

    systemd.services.aami-agent = {
      description = unit.Unit.Description;
      wantedBy = [ "multi-user.target" ];
      wants = [ "network-online.target" ];
      after = [ "network-online.target" ];
      unitConfig = removeAttrs unit.Unit [ "Description" "Documentation" "Wants" "After" ];
      path = cfg.extraPackages;
      restartTriggers = [ configFile ];
      serviceConfig = unit.Service // {
        ExecStart = "${cfg.package}/bin/aami-agent run --config /etc/aami/agent.yaml";
        ReadWritePaths = readWritePaths;
      };
    };
  };
}
