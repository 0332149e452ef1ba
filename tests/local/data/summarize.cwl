cwlVersion: v1.2
class: ExpressionTool
doc: Counts files and lists their names.
requirements:
  InlineJavascriptRequirement: {}
inputs:
  files: File[]
outputs:
  names: string[]
  count: int
expression: |
  ${
    return {
      "names": inputs.files.map(function (f) { return f.basename; }),
      "count": inputs.files.length
    };
  }
