// Schema validation errors (ajv's, through fastify) as one line that names the field: `unknown field "x"`,
// `messages[0].role must be one of ...`, `temperature must be >= 0`.
export interface SchemaError {
  instancePath: string;
  keyword: string;
  params: Record<string, unknown>;
  message?: string;
}

/** '/messages/0/role' as messages[0].role */
export function fieldName(instancePath: string): string {
  return instancePath.split('/').slice(1).reduce((name, part) => (/^\d+$/.test(part) ? `${name}[${part}]` : name ? `${name}.${part}` : part), '');
}

function describe(e: SchemaError): string {
  const field = fieldName(e.instancePath);
  const where = field ? ` in ${field}` : '';
  switch (e.keyword) {
    case 'additionalProperties':
      return `unknown field "${String(e.params.additionalProperty)}"${where}`;
    case 'required':
      return `${field ? `${field}.` : ''}${String(e.params.missingProperty)} is required`;
    case 'enum':
      return `${field} must be one of ${(e.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    case 'const':
      return `${field} must be ${JSON.stringify(e.params.allowedValue)}`;
    default:
      return `${field || 'the body'} ${e.message ?? 'is not valid'}`;
  }
}

/**
 * The error to report. ajv lists a failed anyOf's branches before the anyOf itself: a branch that failed on
 * a value (a minimum, a length) says more than those that failed on the type; when all failed on the type,
 * the types allowed are listed.
 */
export function validationMessage(errors: SchemaError[]): { message: string; param: string | null } {
  const any = errors.find((e) => e.keyword === 'anyOf');
  if (!any) return { message: describe(errors[0]), param: fieldName(errors[0].instancePath) || null };
  const branches = errors.filter((e) => e !== any && e.keyword !== 'anyOf');
  const telling = branches.find((e) => e.keyword !== 'type');
  const field = fieldName(any.instancePath);
  if (telling) return { message: describe(telling), param: fieldName(telling.instancePath) || field || null };
  const types = [...new Set(branches.filter((e) => e.instancePath === any.instancePath).map((e) => String(e.params.type)))];
  const deeper = branches.find((e) => e.instancePath !== any.instancePath);
  if (types.length === 0 && deeper) return { message: describe(deeper), param: fieldName(deeper.instancePath) };
  return { message: `${field || 'the body'} must be ${types.map((t) => (t === 'null' ? 'null' : /^[aeiou]/.test(t) ? `an ${t}` : `a ${t}`)).join(' or ')}`, param: field || null };
}
