# An example host for `nix flake check`: both AAMI services with non-default
# settings, so the evaluation shows options reaching agent.yaml and server.yaml.
{ ... }:
{
  boot.isContainer = true;
  system.stateVersion = "24.05";

  services.aami-server = {
    enable = true;
    openFirewall = true;
    environmentFile = "/run/secrets/aami-server.env";
    settings = {
      server.listen = "0.0.0.0:8443";
      server.tls_cert = "/etc/aami/tls/server.crt";
      server.tls_key = "/etc/aami/tls/server.key";
      compat.legacy_checks = true;
      retention.executions = "90d";
    };
  };

  services.aami-agent = {
    enable = true;
    trustedKeys.ops = ./example-ops.pub;
    settings = {
      server.url = "https://config.example:8443";
      server.ca_file = "/etc/aami/ca.pem";
      agent.poll_interval = "1m";
      executor.max_concurrent = 8;
      metrics.textfile_dir = "/var/lib/prometheus-node-exporter/textfile";
    };
  };
}
