# The typed keys of services.agent-orchestrator.settings (orchestratord/language/settings.py's
# Settings); everything else passes through as JSON (RFC 42) and the daemon checks it
# when it starts.
{
  lib,
  jsonType,
  duration,
  opt,
  workflowsDir,
  defaultSocket,
  defaultStateDir,
}:

let
  inherit (lib) mkOption types;
in
{
  freeformType = jsonType;
  options = {
    state_dir = mkOption {
      type = types.str;
      default = defaultStateDir;
      description = ''
        The state database and the skills' files (systemd's StateDirectory). Another
        directory is created and made writable for the daemon; one in /tmp, /home or
        the Nix store is refused.
      '';
    };
    database = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/var/lib/agent-orchestrator-db/state.db";
      description = "The SQLite state database; default: state.db in state_dir. Its directory is made writable.";
    };
    workflows_dir = mkOption {
      type = types.str;
      default = workflowsDir;
      readOnly = true;
      description = "Where the daemon reads workflows; set by {option}`${opt}.workflows`.";
    };
    skill_paths = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [ "/var/lib/agent-skills" ];
      description = ''
        Directories of skill directories (SKILL.md and actions.yaml) besides the bundled
        skills and those of {option}`${opt}.skills`.
      '';
    };
    socket = mkOption {
      type = types.str;
      default = defaultSocket;
      description = "The daemon's control socket. Another directory than /run/agent-orchestrator is created for it.";
    };
    socket_group = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "wheel";
      description = "Group whose members may use the control socket (start and inspect runs).";
    };
    metrics_listen = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "127.0.0.1:9464";
      description = "host:port serving Prometheus metrics at /metrics.";
    };
    max_active_runs = mkOption {
      type = types.ints.between 1 10000;
      default = 64;
      description = "At most this many runs at once.";
    };
    workspace_retention = mkOption {
      # The daemon's own default, spelt out: null here is a value (keep every
      # workspace), so it cannot also mean "unset".
      type = types.nullOr duration;
      default = "7d";
      example = null;
      description = "How long a run's workspace is kept after the run ended; null keeps them all.";
    };
    step_timeout = mkOption {
      type = types.nullOr duration;
      default = null;
      example = "10m";
      description = "Timeout of steps that set none.";
    };
    step_units = mkOption {
      type = types.enum [
        "auto"
        "always"
        "never"
      ];
      default = "auto";
      description = ''
        Run each attempt of a command step as its own transient systemd unit
        (orchestrator-step-<run>-<step>-<attempt>.service): sandboxed, resource-limited,
        killed by cgroup, and collected after a daemon restart instead of run again.
        `always` fails a step that cannot have one; `never` runs steps as the daemon's children.
      '';
    };
    step_sandbox = mkOption {
      default = { };
      description = "The sandbox of step units, in systemd's own property names.";
      type = types.submodule {
        freeformType = jsonType;
        options = {
          default = mkOption {
            type = types.attrsOf jsonType;
            default = { };
            example = {
              MemoryMax = "1G";
              CPUQuota = "50%";
              TasksMax = 256;
            };
            description = ''
              Unit properties of every command step, over the built-in hardening
              (ProtectSystem=strict, ProtectHome=, PrivateTmp=, PrivateUsers=, no capabilities,
              SystemCallFilter=@system-service, ...); set one to false or "no" to lift it.
            '';
          };
          skills = mkOption {
            type = types.attrsOf (types.attrsOf jsonType);
            default = { };
            example = {
              code-review = {
                PrivateNetwork = true;
                MemoryMax = "2G";
              };
            };
            description = ''
              Per skill, by name: properties over the default. An action's own `sandbox:`
              in its actions.yaml goes over these.
            '';
          };
          unavailable = mkOption {
            type = types.enum [
              "warn"
              "error"
            ];
            default = "warn";
            description = ''
              Where steps cannot run in units: run a step whose skill or action asks for a
              sandbox without it (warn, recorded with the run) or fail it (error).
            '';
          };
        };
      };
    };
    alerts = mkOption {
      default = { };
      description = "Where the daemon sends an alert when a run fails or a workflow goes stale.";
      type = types.submodule {
        options = {
          webhooks = mkOption {
            default = [ ];
            description = "URLs that receive each alert as a JSON POST.";
            type = types.listOf (
              types.submodule {
                options.url = mkOption {
                  type = types.strMatching "https?://.+";
                  description = "Webhook URL.";
                };
                options.headers = mkOption {
                  type = types.attrsOf types.str;
                  default = { };
                  description = "Request headers (world-readable in the Nix store: no tokens).";
                };
              }
            );
          };
          commands = mkOption {
            type = types.listOf (types.nonEmptyListOf types.str);
            default = [ ];
            example = [
              [
                "/run/current-system/sw/bin/logger"
                "-t"
                "orchestrator-alert"
              ]
            ];
            description = ''
              argv of programs that receive each alert as JSON on stdin. They run with the
              daemon's credentials: a token in {option}`${opt}.secrets` is readable at
              `$CREDENTIALS_DIRECTORY/<name>`.
            '';
          };
          stale_after = mkOption {
            type = types.attrsOf duration;
            default = { };
            example = {
              deploy = "2d";
            };
            description = "Alert when a workflow has not succeeded for this long.";
          };
        };
      };
    };
    skills = mkOption {
      type = types.attrsOf (types.attrsOf jsonType);
      default = { };
      example = {
        nixos-deployment.allow_switch = false;
        health-monitoring.units = [ "sshd.service" ];
        internal-comms.webhook = "http://127.0.0.1:8080/status";
      };
      description = ''
        Settings of each skill, by skill name. Bundled skills read:
        `nixos-deployment`: output, allow_switch, flake, nixos_rebuild;
        `health-monitoring`: units, endpoints ({ url, status, max_latency, unix_socket }),
        disks ({ path, min_free });
        `ai-service-management`: services (name -> unit; see {option}`${opt}.managedServices`),
        start_timeout;
        `internal-comms`: report_dir, webhook.
      '';
    };
  };
}
