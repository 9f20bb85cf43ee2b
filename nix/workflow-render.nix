# Values of the workflow and skill options (workflow-options.nix) rendered back into
# the file format the daemon reads (orchestratord/language/model.py), as JSON: a workflow file,
# and a skill directory's actions.yaml and SKILL.md.
{ lib }:

let
  dropNulls = lib.filterAttrs (_: v: v != null);
  dropEmpty = lib.filterAttrs (_: v: v != null && v != { } && v != [ ]);

  renderRollback = r: if r == null then null else dropNulls r;

  renderStep =
    s:
    dropEmpty {
      inherit (s)
        id
        skill
        action
        route
        capability
        description
        params
        depends_on
        when
        retry
        timeout
        ;
      rollback = renderRollback s.rollback;
    }
    # Only what differs from the format's defaults, to keep the files short.
    // lib.optionalAttrs (s.trigger_rule != "all_success") { inherit (s) trigger_rule; }
    // lib.optionalAttrs s.continue_on_error { continue_on_error = true; }
    # `depends_on = [ ]` (no dependencies) differs from absent (the item before).
    // lib.optionalAttrs (s.depends_on == [ ]) { depends_on = [ ]; };

  renderItem =
    i:
    if i.parallel != null then
      dropNulls {
        inherit (i) id depends_on;
        parallel = map renderStep i.parallel;
      }
    else
      renderStep i;

  renderAction =
    a:
    dropEmpty {
      inherit (a)
        description
        command
        params
        env
        timeout
        retry
        ;
      http = if a.http == null then null else dropEmpty a.http;
      rollback = renderRollback a.rollback;
    };
in
{
  # The workflow file (as the loader reads it) for workflows.<name>.
  renderWorkflow = wfName: w: {
    workflow = dropEmpty {
      name = wfName;
      inherit (w)
        description
        concurrency
        timeout
        on_failure
        outputs
        ;
      params = lib.mapAttrs (_: dropNulls) w.params;
      steps = map renderItem w.steps;
    };
  };

  # actions.yaml of a skill directory (JSON is YAML).
  renderSkillActions =
    s:
    dropNulls {
      inherit (s) concurrency;
      actions = lib.mapAttrs (_: renderAction) s.actions;
    };

  # SKILL.md of a skill directory: the frontmatter the loader reads. JSON strings are
  # YAML scalars, so any description is quoted correctly.
  renderSkillMarkdown =
    skillName: s:
    ''
      ---
      name: ${builtins.toJSON skillName}
      description: ${builtins.toJSON (if s.description == "" then skillName else s.description)}
    ''
    + lib.optionalString (s.version != null) ''
      version: ${builtins.toJSON s.version}
    ''
    + ''
      ---
      ${s.description}
    '';
}
