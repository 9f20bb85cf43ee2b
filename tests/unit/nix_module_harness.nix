# Evaluates nix/module.nix with nixpkgs' lib alone (no nixpkgs, no builder), for
# tests/unit/test_nix_module.py:
#
#   nix-instantiate --eval --strict --json -E \
#     'import ./nix_module_harness.nix { nixpkgsLib = /path/to/nixpkgs.lib; config = { ... }; }'
#
# Beside the module it loads declarations of the NixOS options the module sets, with
# the types NixOS gives them (so a misspelt option is an error here as on NixOS), and a
# `pkgs` whose builders return inert stand-ins that remember their inputs: the test reads
# the JSON the module rendered from them without building anything.
{
  nixpkgsLib,
  config,
  # A cross-built system: the build platform cannot run the host's programs.
  cross ? false,
  # Whether pkgs has agent-orchestrator (the flake's overlay).
  overlay ? true,
}:

let
  lib = import (nixpkgsLib + "/lib");
  inherit (lib) mkOption types;

  # A stand-in derivation: a string-coercible attrset carrying what it was made from.
  drv =
    name: attrs:
    attrs
    // {
      type = "derivation";
      inherit name;
      outPath = "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" name)}-${name}";
    };

  package = drv "agent-orchestrator-0.1.0" { meta.mainProgram = "orchestratord"; };
  platform = name: {
    system = name;
    canExecute = other: other.system == name;
  };
  pkgs = {
    # As pkgs/pkgs-lib/formats.nix defines the JSON format's type.
    formats.json =
      { }:
      {
        type =
          let
            valueType =
              types.nullOr (
                types.oneOf [
                  types.bool
                  types.int
                  types.float
                  types.str
                  types.path
                  (types.attrsOf valueType)
                  (types.listOf valueType)
                ]
              )
              // {
                description = "JSON value";
              };
          in
          valueType;
        generate = name: value: drv name { json = value; };
      };
    writeText = name: text: drv name { inherit text; };
    linkFarm = name: entries: drv name { inherit entries; };
    runCommand = name: env: script: drv name { inherit env script; };
    stdenv = {
      buildPlatform = platform "x86_64-linux";
      hostPlatform = platform (if cross then "aarch64-linux" else "x86_64-linux");
    };
    buildPackages = {
      systemd = drv "systemd-build" { };
      agent-orchestrator = drv "agent-orchestrator-0.1.0-build" { };
    };
  }
  // lib.optionalAttrs overlay { agent-orchestrator = package; };

  # nixos/lib/systemd-lib.nix: a type for options that take a unit name.
  unitNameType = types.strMatching "[a-zA-Z0-9@%:_.\\-]+[.](service|socket|device|mount|automount|swap|target|path|timer|scope|slice)";
  unitNames = mkOption {
    type = types.listOf unitNameType;
    default = [ ];
  };

  # nixos/lib/systemd-unit-options.nix: a unit setting; list definitions concatenate,
  # a mix of lists and non-lists is an error, non-lists must agree.
  unitOption = lib.mkOptionType {
    name = "systemd option";
    merge =
      loc: defs:
      let
        defs' = lib.filterOverrides defs;
      in
      if lib.isList (lib.head defs').value then
        lib.concatMap (
          def:
          if lib.isList def.value then
            def.value
          else
            throw "The definitions for systemd unit options should be either all lists or all non-lists, but for the option ${lib.showOption loc}, they are a mix"
        ) defs'
      else
        lib.mergeEqualOption loc defs';
  };

  # systemd-unit-options.nix's checkService: Type= and Restart= take these values only.
  # It sees the definitions before merging: mkOverride and mkIf wrappers unwrapped first.
  checkService =
    config:
    let
      unwrap = v: if lib.elem (v._type or "") [ "override" "if" ] then v.content else v;
      oneOf = key: values: !(config ? ${key}) || lib.elem (unwrap config.${key}) values;
    in
    oneOf "Type" [
      "exec"
      "simple"
      "forking"
      "oneshot"
      "dbus"
      "notify"
      "notify-reload"
      "idle"
    ]
    && oneOf "Restart" [
      "no"
      "on-success"
      "on-failure"
      "on-abnormal"
      "on-abort"
      "on-watchdog"
      "always"
    ];

  commonUnitOptions = {
    enable = mkOption {
      type = types.bool;
      default = true;
    };
    description = mkOption {
      type = types.singleLineStr;
      default = "";
    };
    wantedBy = unitNames;
    requiredBy = unitNames;
    wants = unitNames;
    requires = unitNames;
    after = unitNames;
    before = unitNames;
    onFailure = unitNames;
    unitConfig = mkOption {
      type = types.attrsOf unitOption;
      default = { };
    };
    overrideStrategy = mkOption {
      type = types.enum [
        "asDropinIfExists"
        "asDropin"
      ];
      default = "asDropinIfExists";
    };
  };

  nixosOptions = {
    options = {
      system.checks = mkOption {
        type = types.listOf types.package;
        default = [ ];
      };
      users.groups = mkOption {
        type = types.attrsOf (
          types.submodule (
            { name, ... }:
            {
              options.name = mkOption {
                type = types.passwdEntry types.str;
                default = name;
              };
              options.gid = mkOption {
                type = types.nullOr types.int;
                default = null;
              };
              options.members = mkOption {
                type = types.listOf (types.passwdEntry types.str);
                default = [ ];
              };
            }
          )
        );
        default = { };
      };
      # nixos/modules/system/boot/systemd/tmpfiles.nix
      systemd.tmpfiles.settings = mkOption {
        type = types.attrsOf (
          types.attrsOf (
            types.attrsOf (
              types.submodule (
                { name, ... }:
                {
                  options = {
                    type = mkOption {
                      type = types.str;
                      default = name;
                    };
                    mode = mkOption {
                      type = types.str;
                      default = "-";
                    };
                    user = mkOption {
                      type = types.str;
                      default = "-";
                    };
                    group = mkOption {
                      type = types.str;
                      default = "-";
                    };
                    age = mkOption {
                      type = types.str;
                      default = "-";
                    };
                    argument = mkOption {
                      type = types.str;
                      default = "";
                    };
                  };
                }
              )
            )
          )
        );
        default = { };
      };
      assertions = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      warnings = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      environment.etc = mkOption {
        type = types.attrsOf (
          types.submodule {
            options.source = mkOption { type = types.path; };
          }
        );
        default = { };
      };
      environment.systemPackages = mkOption {
        type = types.listOf types.package;
        default = [ ];
      };
      environment.variables = mkOption {
        type = types.attrsOf types.str;
        default = { };
      };
      systemd.packages = mkOption {
        type = types.listOf types.package;
        default = [ ];
      };
      systemd.services = mkOption {
        type = types.attrsOf (
          types.submodule {
            options = commonUnitOptions // {
              path = mkOption {
                type = types.listOf (
                  types.oneOf [
                    types.package
                    types.str
                  ]
                );
                default = [ ];
              };
              environment = mkOption {
                type = types.attrsOf (
                  types.nullOr (
                    types.oneOf [
                      types.str
                      types.path
                      types.package
                    ]
                  )
                );
                default = { };
              };
              reloadTriggers = mkOption {
                type = types.listOf unitOption;
                default = [ ];
              };
              restartTriggers = mkOption {
                type = types.listOf types.unspecified;
                default = [ ];
              };
              restartIfChanged = mkOption {
                type = types.bool;
                default = true;
              };
              reloadIfChanged = mkOption {
                type = types.bool;
                default = false;
              };
              stopIfChanged = mkOption {
                type = types.bool;
                default = true;
              };
              serviceConfig = mkOption {
                type = types.addCheck (types.attrsOf unitOption) checkService;
                default = { };
              };
            };
          }
        );
        default = { };
      };
      systemd.timers = mkOption {
        type = types.attrsOf (
          types.submodule {
            options = commonUnitOptions // {
              timerConfig = mkOption {
                type = types.attrsOf unitOption;
                default = { };
              };
            };
          }
        );
        default = { };
      };
    };
  };

  evaluated = lib.evalModules {
    modules = [
      ../../nix/module.nix
      nixosOptions
      config
    ];
    specialArgs = { inherit pkgs; };
  };
  cfg = evaluated.config;

  # What a stand-in derivation was made from, as JSON.
  describe =
    d:
    if d ? json then
      {
        kind = "json";
        inherit (d) name json;
      }
    else if d ? text then
      {
        kind = "text";
        inherit (d) name text;
      }
    else if d ? entries then
      {
        kind = "linkFarm";
        inherit (d) name;
        entries = map (e: {
          inherit (e) name;
          path = describe e.path;
        }) d.entries;
      }
    else if d ? script then
      {
        kind = "runCommand";
        inherit (d) name script;
        inputs = lib.mapAttrs (_: v: if v ? type then describe v else v) (
          removeAttrs d.env [ "nativeBuildInputs" ]
        );
        nativeBuildInputs = map (p: p.name) (d.env.nativeBuildInputs or [ ]);
      }
    else
      throw "not a stand-in derivation: ${d.name or "?"}";
in
{
  failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) cfg.assertions);
  inherit (cfg) warnings;
  etc = lib.mapAttrs (_: e: describe e.source // { path = "${e.source}"; }) cfg.environment.etc;
  services = cfg.systemd.services;
  timers = cfg.systemd.timers;
  packages = map (p: p.name) cfg.systemd.packages;
  variables = cfg.environment.variables;
  settings = cfg.services.agent-orchestrator.settings;
  checks = map describe cfg.system.checks;
  groups = lib.mapAttrs (_: g: g.name) cfg.users.groups;
  tmpfiles = cfg.systemd.tmpfiles.settings;
  # The package whose programs check settings and workflows at build time, by store path.
  checker =
    let
      p = cfg.services.agent-orchestrator.checkPackage;
    in
    if p == null then null else "${p}";
  packageDefaultText = evaluated.options.services.agent-orchestrator.package.defaultText.text;
}
