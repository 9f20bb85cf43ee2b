# The files under /etc/agent-orchestrator (settings.json, skills/, workflows/) and the
# checks they pass while the system is built: the daemon's `--check` of the settings,
# `orchestratorctl validate` of every workflow, `systemd-analyze calendar` of every
# startAt. A wrong value fails `nixos-rebuild build` with the checker's own message.
{
  lib,
  pkgs,
  cfg,
  opt,
  jsonFormat,
  wf,
  skillsDir,
}:

let
  checker = cfg.checkPackage;
  checkerBin = program: "${lib.getBin checker}/bin/${program}";

  # Keys whose null means something to the daemon (not "use the default").
  meaningfulNulls = [ "workspace_retention" ];

  # Unset optional keys (null) are left out: the daemon's defaults apply. The file is
  # checked by the daemon itself while the system is built, so a wrong value fails
  # `nixos-rebuild build` with the daemon's message (file:line:column: field: why).
  settingsJSON = jsonFormat.generate "agent-orchestrator-settings.json" (
    lib.filterAttrs (n: v: v != null || lib.elem n meaningfulNulls) cfg.settings
  );
  settingsFile =
    if checker == null then
      settingsJSON
    else
      pkgs.runCommand "agent-orchestrator-settings.json"
        {
          settings = settingsJSON;
          preferLocalBuild = true;
        }
        ''
          cp "$settings" settings.json
          # The build sandbox has none of the system's groups; socket_group is one
          # this module creates (users.groups below).
          if ! ${checkerBin "orchestratord"} --check --skip-host-checks --settings settings.json; then
            echo "${opt}.settings is not valid (see above)." >&2
            exit 1
          fi
          cp "$settings" "$out"
        '';

  # `startAt = "dialy"` would build and fail only when the timer is loaded at activation:
  # systemd-analyze (the build platform's) checks every calendar event while building.
  calendarEvents = lib.unique (lib.concatMap (w: lib.toList w.startAt) (lib.attrValues cfg.workflows));
  calendarCheck =
    pkgs.runCommand "agent-orchestrator-calendar-check"
      {
        nativeBuildInputs = [ pkgs.buildPackages.systemd ];
        preferLocalBuild = true;
      }
      (
        lib.concatMapStrings (
          event:
          let
            owners = lib.attrNames (lib.filterAttrs (_: w: lib.elem event (lib.toList w.startAt)) cfg.workflows);
          in
          ''
            if ! systemd-analyze calendar -- ${lib.escapeShellArg event} >/dev/null; then
              echo ${
                lib.escapeShellArg "${opt}.workflows.${lib.head owners}.startAt: `${event}` is not a calendar event (systemd.time(7)); `systemd-analyze calendar '${event}'` says why."
              } >&2
              exit 1
            fi
          ''
        ) calendarEvents
        + "touch $out\n"
      );

  # One directory per skill declared in Nix: SKILL.md (what an agent reads) and
  # actions.yaml (what the daemon runs), as the daemon finds them on its skill path.
  skillTree = pkgs.linkFarm "agent-orchestrator-skills" (
    lib.concatLists (
      lib.mapAttrsToList (name: s: [
        {
          name = "${name}/SKILL.md";
          path = pkgs.writeText "${name}-SKILL.md" (wf.renderSkillMarkdown name s);
        }
        {
          name = "${name}/actions.yaml";
          path = jsonFormat.generate "${name}-actions.yaml" (wf.renderSkillActions s);
        }
      ]) cfg.skills
    )
  );

  # Skill directories the validator needs besides the bundled ones. Paths that exist only
  # at run time are not visible in the build sandbox; see validateWorkflows.
  validatorSkillPaths = [ skillTree ] ++ lib.remove skillsDir cfg.settings.skill_paths;

  # The rendered workflow, checked by `orchestratorctl validate` as a build step (the
  # pattern of nixpkgs' opentelemetry-collector module). It is copied to
  # workflows/<name>.json first so that messages name the workflow, not a store hash.
  workflowFile =
    name: w:
    let
      rendered = jsonFormat.generate "${name}.json" (wf.renderWorkflow name w);
    in
    if !cfg.validateWorkflows || checker == null then
      rendered
    else
      pkgs.runCommand "agent-orchestrator-workflow-${name}.json"
        {
          workflow = rendered;
          preferLocalBuild = true;
        }
        ''
          mkdir workflows
          cp "$workflow" workflows/${lib.escapeShellArg "${name}.json"}
          if ! ${checkerBin "orchestratorctl"} ${
            lib.concatMapStringsSep " " (p: "--skills ${lib.escapeShellArg "${p}"}") validatorSkillPaths
          } validate workflows/${lib.escapeShellArg "${name}.json"}; then
            echo "${opt}.workflows.${name} is not a valid workflow (see above)." >&2
            exit 1
          fi
          cp "$workflow" "$out"
        '';

  workflowFiles = lib.mapAttrs workflowFile cfg.workflows;
in
{
  inherit
    settingsFile
    calendarEvents
    calendarCheck
    skillTree
    workflowFiles
    ;
}
