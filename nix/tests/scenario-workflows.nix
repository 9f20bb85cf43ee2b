# The workflows of a directory of scenario workflow files (*.json), as module values:
# a file's `workflow` section is a value of workflows.<its name> as it is, and its inline
# `skills` section a value of skills (the file format and the options have the same keys).
lib: dir:

let
  docs = map (file: lib.importJSON (dir + "/${file}")) (
    lib.filter (lib.hasSuffix ".json") (lib.attrNames (builtins.readDir dir))
  );
in
{
  workflows = lib.listToAttrs (
    map (doc: lib.nameValuePair doc.workflow.name (removeAttrs doc.workflow [ "name" ])) docs
  );
  skills = lib.foldl' (acc: doc: acc // doc.skills or { }) { } docs;
}
