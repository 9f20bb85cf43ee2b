# The daemon's paths (settings.state_dir, .database, .socket) under its unit's
# hardening. orchestratord.service gets StateDirectory=agent-orchestrator and
# RuntimeDirectory=agent-orchestrator and sees the rest of the file system read-only
# (ProtectSystem=strict), its own /tmp (PrivateTmp=) and no /home, /root or /run/user
# (ProtectHome=). A path elsewhere needs its directory created (tmpfiles) and made
# writable (ReadWritePaths=); a path where that cannot work is refused with the reason.
{
  lib,
  opt,
  defaultStateDir,
  runtimeDir,
}:

let
  under = dir: path: path == dir || lib.hasPrefix "${dir}/" path;

  # What each setting needs writable: a directory (state_dir), or the directory of a
  # file (the database, the socket; SQLite writes its -wal and -shm files beside it).
  wanted =
    settings:
    [
      {
        key = "state_dir";
        path = settings.state_dir;
        dir = settings.state_dir;
        mode = "0750";
      }
      {
        key = "socket";
        path = settings.socket;
        dir = dirOf settings.socket;
        # Clients (root, or members of socket_group) must reach the socket inside.
        mode = "0755";
      }
    ]
    ++ lib.optional (settings.database != null) {
      key = "database";
      path = settings.database;
      dir = dirOf settings.database;
      mode = "0750";
    };

  # Directories systemd already gives the unit, writable and created.
  given = [
    defaultStateDir
    runtimeDir
  ];

  # Directories the module must not create or chmod: shared with the rest of the system.
  shared = [
    "/"
    "/run"
    "/var"
    "/var/lib"
    "/var/cache"
    "/var/log"
    "/srv"
    "/opt"
    "/mnt"
    "/etc"
    "/usr"
  ];
  # Hidden from the unit, or read-only whatever ReadWritePaths= says.
  unreachable = {
    "/tmp" = "PrivateTmp=yes gives the daemon a /tmp of its own";
    "/var/tmp" = "PrivateTmp=yes gives the daemon a /var/tmp of its own";
    "/home" = "ProtectHome=yes hides it from the daemon";
    "/root" = "ProtectHome=yes hides it from the daemon";
    "/run/user" = "ProtectHome=yes hides it from the daemon";
    "/nix/store" = "the Nix store is read-only";
    "/etc" = "/etc is managed by NixOS";
  };

  problem =
    w:
    let
      hidden = lib.filterAttrs (dir: _: under dir w.path) unreachable;
    in
    if !lib.hasPrefix "/" w.path then
      "`${w.path}` is not an absolute path"
    else if hidden != { } then
      "`${w.path}` cannot be used: ${lib.head (lib.attrValues hidden)}"
    else if lib.elem w.dir shared then
      "`${w.path}` is directly in ${w.dir}, which the module would have to make writable for the daemon; use a directory of its own, such as ${w.dir}/agent-orchestrator"
    else
      null;

  # Directories to create and make writable, outside those systemd gives the unit.
  extra = settings: lib.filter (w: !lib.any (g: under g w.dir) given) (wanted settings);
in
{
  assertions =
    settings:
    map (w: {
      assertion = problem w == null;
      message = "${opt}.settings.${w.key}: ${toString (problem w)}.";
    }) (wanted settings);

  extraDirs = settings: lib.unique (map (w: w.dir) (extra settings));

  # systemd.tmpfiles.settings.<name>: "d" creates the directory (and its parents).
  tmpfiles =
    settings:
    lib.listToAttrs (
      map (
        w:
        lib.nameValuePair w.dir {
          d = {
            inherit (w) mode;
            user = "root";
            group = "root";
          };
        }
      ) (extra settings)
    );
}
