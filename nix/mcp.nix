# services.agent-orchestrator.mcp: `orchestratorctl mcp` as a service, the Model Context
# Protocol over streamable HTTP on a loopback address, for agent hosts that connect by
# URL. (Hosts that launch a server over stdio run `orchestratorctl mcp` themselves.)
# It is a client of the daemon's control socket, as a member of settings.socket_group.
{
  config,
  lib,
  ...
}:

let
  inherit (lib) mkOption types;
  cfg = config.services.agent-orchestrator;
  mcp = cfg.mcp;
  opt = "services.agent-orchestrator.mcp";
in
{
  options.services.agent-orchestrator.mcp = {
    enable = lib.mkEnableOption "the MCP server over streamable HTTP (agent-orchestrator-mcp.service)";
    listen = mkOption {
      type = types.strMatching "(127[.][0-9]+[.][0-9]+[.][0-9]+|[[]::1[]]):[0-9]{1,5}";
      default = "127.0.0.1:8765";
      description = "Loopback address and port; clients connect to http://<listen>/mcp.";
    };
    tokenFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/run/keys/orchestrator-mcp-token";
      description = ''
        File holding the bearer token every request must carry (at least 16
        characters, e.g. `openssl rand -hex 32`). Passed as a systemd credential; its
        content never enters the Nix store.
      '';
    };
    allowRun = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Let agents start, cancel, resume and call (the mutating tools); otherwise the
        server only reads and those tools answer how to enable them.
      '';
    };
  };

  config = lib.mkIf (cfg.enable && mcp.enable) {
    assertions = [
      {
        assertion = mcp.tokenFile != null;
        message = "${opt}.tokenFile must be set: the HTTP transport requires a bearer token.";
      }
      {
        assertion = cfg.settings.socket_group != null;
        message = "${opt}.enable needs services.agent-orchestrator.settings.socket_group: the MCP server reaches the daemon's control socket as a member of that group.";
      }
    ];

    systemd.services.agent-orchestrator-mcp = {
      description = "agent-orchestrator: the MCP server (streamable HTTP on ${mcp.listen})";
      wantedBy = [ "multi-user.target" ];
      after = [ "orchestratord.service" ];
      wants = [ "orchestratord.service" ];
      serviceConfig = {
        ExecStart = lib.escapeShellArgs (
          [
            "${cfg.package}/bin/orchestratorctl"
            "--socket"
            cfg.settings.socket
            "mcp"
            "--http"
            mcp.listen
            "--token-file"
            "%d/token"
          ]
          ++ lib.optional mcp.allowRun "--allow-run"
        );
        LoadCredential = lib.optional (mcp.tokenFile != null) "token:${mcp.tokenFile}";
        DynamicUser = true;
        SupplementaryGroups = lib.optional (cfg.settings.socket_group != null) cfg.settings.socket_group;
        Restart = "on-failure";
        # 2 and 78: a listen address or token file that cannot work; restarting cannot help.
        RestartPreventExitStatus = [ 2 78 ];
        CapabilityBoundingSet = [ "" ];
        NoNewPrivileges = true;
        PrivateTmp = true;
        PrivateDevices = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        ProtectProc = "invisible";
        ProcSubset = "pid";
        RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" ];
        RestrictNamespaces = true;
        RestrictRealtime = true;
        RestrictSUIDSGID = true;
        LockPersonality = true;
        SystemCallArchitectures = "native";
        SystemCallFilter = [ "@system-service" ];
        UMask = "0077";
      };
    };
  };
}
