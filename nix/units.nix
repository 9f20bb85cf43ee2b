# The units' drop-ins: orchestratord.service and orchestrator@.service ship with the
# package (systemd.packages); what the module configures of them is added here, with a
# timer per workflow that has startAt. nix/module.nix sets `systemd.services` and
# `systemd.timers` to this file's `services` and `timers`.
{
  lib,
  cfg,
  paths,
  settingsFile,
  skillTree,
  workflowFiles,
}:

let
  allowSwitch = cfg.settings.skills."nixos-deployment".allow_switch or false == true;
in
{
  services.orchestratord = {
    # [Install] sections of packaged units are not read on NixOS.
    wantedBy = [ "multi-user.target" ];
    inherit (cfg) path environment;
    # The daemon rereads workflows and skills on reload (ExecReload= asks it over the
    # control socket and waits until it has), so a rebuild that changes only them
    # reloads it without interrupting runs, and the switch returns once they are in use. Settings are read
    # at start: a change restarts it (running runs resume afterwards).
    reloadTriggers = lib.attrValues workflowFiles ++ lib.optional (cfg.skills != { }) skillTree;
    restartTriggers = [ settingsFile ];
    serviceConfig = lib.mkMerge [
      {
        LoadCredential = lib.mapAttrsToList (name: file: "${name}:${file}") cfg.secrets;
      }
      (lib.mkIf (paths.extraDirs cfg.settings != [ ]) {
        ReadWritePaths = paths.extraDirs cfg.settings;
      })
      # nixos-rebuild switch writes the system profile, /boot and /etc, and restarts
      # anything: the unit's sandbox is lifted when the deployment skill may switch.
      (lib.mkIf allowSwitch {
        ProtectSystem = false;
        ProtectHome = false;
        PrivateDevices = false;
        PrivateTmp = false;
        ProtectKernelModules = false;
        ProtectKernelTunables = false;
        ProtectControlGroups = false;
        RestrictNamespaces = false;
        NoNewPrivileges = false;
        MemoryDenyWriteExecute = false;
        # "~" (an inverted empty set) restores every capability; "" empties the filter.
        CapabilityBoundingSet = [ "~" ];
        SystemCallFilter = [ "" ];
      })
    ];
  };

  # Drop-in for the template: every orchestrator@<name> unit.
  services."orchestrator@" = {
    overrideStrategy = "asDropin";
    # A switch must not cancel a running workflow: an active orchestrator@<name> is
    # its run's client, and its unit changes with every nixpkgs update (its PATH).
    # The new definition applies from the next start, as for restic's oneshot units.
    restartIfChanged = false;
    onFailure = cfg.alertUnits;
    environment.ORCHESTRATOR_SOCKET = cfg.settings.socket;
    # A cancel the daemon cannot take while it restarts is written to the state
    # database (the packaged unit allows /var/lib/agent-orchestrator).
    serviceConfig = lib.mkIf (cfg.settings.state_dir != "/var/lib/agent-orchestrator") {
      ReadWritePaths = [ cfg.settings.state_dir ];
    };
  };

  # A timer per workflow with startAt, activating orchestrator@<name>.service.
  timers = lib.mapAttrs' (
    name: w:
    lib.nameValuePair "orchestrator@${name}" {
      description = "Scheduled runs of workflow ${name}";
      wantedBy = [ "timers.target" ];
      timerConfig = lib.mkMerge [
        {
          OnCalendar = w.startAt;
          Unit = "orchestrator@${name}.service";
          Persistent = lib.mkDefault true;
        }
        w.timerConfig
      ];
    }
  ) (lib.filterAttrs (_: w: w.startAt != [ ]) cfg.workflows);
}
