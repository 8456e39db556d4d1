package config

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// unknownKeys names every key in a YAML file that the configuration does
// not have: a typo ("treshold") would otherwise be silently ignored.
func unknownKeys(data []byte) Problems {
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return Problems{{Key: "(file)", Msg: err.Error()}}
	}
	var out Problems
	walkKeys("", doc, reflect.TypeOf(Config{}), &out)
	return out
}

func walkKeys(prefix string, m map[string]any, t reflect.Type, out *Problems) {
	fields := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("mapstructure")
		if tag == "" || tag == "-" {
			continue
		}
		fields[tag] = f.Type
	}
	for k, v := range m {
		key := prefix + k
		ft, ok := fields[strings.ToLower(k)]
		if !ok {
			known := slices.Sorted(maps.Keys(fields))
			msg := "unknown key"
			if s := suggestKey(k, known); s != "" {
				msg += fmt.Sprintf("; did you mean %s?", prefix+s)
			}
			*out = append(*out, Problem{Key: key, Msg: fmt.Sprintf("%s (known here: %s)", msg, strings.Join(known, ", "))})
			continue
		}
		if ft.Kind() == reflect.Struct && ft != durationType {
			if sub, ok := v.(map[string]any); ok {
				walkKeys(key+".", sub, ft, out)
			}
		}
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			if list, ok := v.([]any); ok {
				for i, item := range list {
					if sub, ok := item.(map[string]any); ok {
						walkKeys(fmt.Sprintf("%s[%d].", key, i), sub, ft.Elem(), out)
					}
				}
			}
		}
	}
}
